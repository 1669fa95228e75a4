"""Full peer-to-peer market with product differentiation: the entry point.

Build a problem with :func:`make_p2p_problem`, clear it with :func:`clear_p2p` (decentralised
consensus ADMM by default, or the centralised HiGHS reference), read the result's ``p_kw``,
``trades_table()`` and ``welfare_eur``. The model is described in
:mod:`lemgrid.market.p2p.problem`, the algorithms in :mod:`lemgrid.market.p2p.admm`,
:mod:`lemgrid.market.p2p.central` and :mod:`lemgrid.market.p2p.peer`, and in ``docs/p2p.md``.

References
----------
.. [1] T. Sorin, L. Bobo, P. Pinson, "Consensus-based approach to peer-to-peer electricity markets
   with product differentiation", IEEE Trans. Power Systems 34(2), 994-1004, 2019.
.. [2] T. Baroche, P. Pinson, R. Le Goff Latimier, H. Ben Ahmed, "Exogenous cost allocation in
   peer-to-peer electricity markets", IEEE Trans. Power Systems 34(4), 2553-2564, 2019.
"""

from __future__ import annotations

from collections.abc import Callable

from lemgrid.errors import InputError
from lemgrid.market.p2p.admm import solve_p2p_admm
from lemgrid.market.p2p.central import solve_p2p_central
from lemgrid.market.p2p.problem import (
    P2PProblem,
    P2PResult,
    differentiation_costs,
    make_p2p_problem,
    welfare_eur,
)

__all__ = [
    "P2PProblem",
    "P2PResult",
    "clear_p2p",
    "differentiation_costs",
    "make_p2p_problem",
    "solve_p2p_admm",
    "solve_p2p_central",
    "welfare_gap",
    "welfare_eur",
]

_METHODS: dict[str, Callable[..., P2PResult]] = {"admm": solve_p2p_admm,
                                                 "central": solve_p2p_central}


def clear_p2p(problem: P2PProblem, method: str = "admm", **options) -> P2PResult:
    """Clear every interval of a P2P market.

    Parameters
    ----------
    problem : P2PProblem
    method : {"admm", "central"}
        Decentralised consensus ADMM (:func:`solve_p2p_admm`) or the centralised QP
        (:func:`solve_p2p_central`).
    **options
        Passed to the solver (e.g. ``price0_eur_per_kwh``, ``tol_primal_kwh`` for ADMM).

    Returns
    -------
    P2PResult
    """
    try:
        solver = _METHODS[method]
    except KeyError:
        raise InputError(f"method must be one of {sorted(_METHODS)}, got {method!r}") from None
    return solver(problem, **options)


def welfare_gap(result: P2PResult, reference: P2PResult) -> float:
    """Relative gap of the total welfare to a reference (e.g. the central optimum) [-].

    ``|W - W_ref| / max(|W_ref|, 1e-12)`` with ``W`` summed over the intervals [EUR].
    """
    ref = reference.total_welfare_eur
    return abs(result.total_welfare_eur - ref) / max(abs(ref), 1e-12)
