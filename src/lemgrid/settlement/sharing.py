"""Benefit sharing in an energy community: no member pays more than it would alone.

A community manager that schedules every member's assets can use one member's battery for another
member's load, so the members' bills at the community's internal (marginal) prices, though they
add up to less than the business-as-usual bills, can leave some members worse off than alone. A
*savings-based* cost allocation (González-Asenjo, Izquierdo & Izquierdo 2025) starts from what
each member would pay alone, its stand-alone (business-as-usual) cost ``R_n``, and hands out the
community's saving ``S = sum_n R_n - C`` (``C``: what the community pays in total):

    final_n = R_n - w_n S,   w_n >= 0,   sum_n w_n = 1.

It is budget balanced (``sum_n final_n = C``) and individually rational whenever ``S >= 0``
(every ``final_n <= R_n``); the community clearing guarantees ``S >= 0`` under perfect forecasts
by a constraint (``docs/community.md``; the idea of bounding every member's cost by its
stand-alone cost is that of Cornélusse et al. 2019).

The weights here keep the price signal: ``w_n`` is proportional to member ``n``'s gain at the
internal prices, ``g_n = R_n - P_n`` (``P_n``: its bill at those prices), counted where it is
positive. Members the internal prices leave worse off are brought back to ``R_n``; members they
favour give up that amount in proportion to their gains. So every member's final bill lies
between ``R_n`` and ``P_n``: the prices decide who gains, the sharing only makes the gains add up
to the community's saving. If the community costs more than business-as-usual (``S < 0``: only
possible where grid limits bind that business-as-usual breaks), the same holds with the roles
swapped: members the prices favour pay ``R_n``, and the deficit falls on those the prices charge
more than alone, in proportion to that excess (never beyond it).

References
----------
.. [1] D. González-Asenjo, L. R. Izquierdo, S. S. Izquierdo, "Cost allocation methods and their
   properties in energy communities", Energies 18(23), 6236, 2025, doi:10.3390/en18236236
   (savings-based methods).
.. [2] D. González-Asenjo, L. R. Izquierdo, J. Sedano, "A simple and efficient method to allocate
   costs and benefits in energy communities", J. Industrial Engineering and Management 16(2),
   398-424, 2023, doi:10.3926/jiem.5514.
.. [3] B. Cornélusse, I. Savelli, S. Paoletti, A. Giannitrapani, A. Vicino, "A community
   microgrid architecture with an internal local market", Applied Energy 242, 547-560, 2019.
"""

from __future__ import annotations

import numpy as np

from lemgrid.errors import InputError


def share_savings(reference_eur: np.ndarray, market_eur: np.ndarray) -> np.ndarray:
    """Transfers that turn the members' bills at internal prices into a savings-based allocation.

    Parameters
    ----------
    reference_eur : ndarray, shape (N,)
        What each member would pay alone over the period (business-as-usual) [EUR].
    market_eur : ndarray, shape (N,)
        What each member pays at the community's internal prices over the same period [EUR].

    Returns
    -------
    ndarray, shape (N,)
        Transfer each member pays on top of ``market_eur`` [EUR]; they add up to zero, and
        ``market_eur + transfer = reference_eur - w S`` with ``S = sum(reference - market)`` and
        ``w`` proportional to the positive parts of ``reference - market`` if ``S >= 0``, to its
        negative parts otherwise.
    """
    reference_eur = np.asarray(reference_eur, float)
    market_eur = np.asarray(market_eur, float)
    if reference_eur.shape != market_eur.shape or reference_eur.ndim != 1:
        raise InputError(f"share_savings: reference and market bills must be two equal 1-D arrays, "
                         f"got shapes {reference_eur.shape} and {market_eur.shape}")
    if not (np.isfinite(reference_eur).all() and np.isfinite(market_eur).all()):
        raise InputError("share_savings: bills must be finite numbers")
    gain = reference_eur - market_eur
    saving = gain.sum()
    side = np.maximum(gain if saving >= 0 else -gain, 0.0)
    weight = side / side.sum() if side.sum() > 0 else np.zeros(len(gain))
    return gain - weight * saving
