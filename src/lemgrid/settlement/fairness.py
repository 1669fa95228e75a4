"""Fair sharing of a community's benefit: allocation rules compared on the same clearing.

The game
--------
Given the members' delivered net positions (the clearing's outcome: what each member imports or
exports at each interval), a coalition ``S`` saves by pooling its positions: a kWh one member
exports and another imports in the same interval is not sold to the retailer at the feed-in tariff
and bought back at the retail price. With ``I_S,t`` and ``E_S,t`` what the members of ``S``
import and export at interval ``t`` [kWh], the value of ``S`` is

    v(S) = sum_t kappa_t min(I_S,t, E_S,t),   kappa_t = buy_t - local_t - sell_t,

``buy`` the retail price a member pays for a kWh from the grid (energy, network, levies),
``sell`` the feed-in tariff and ``local`` what a kWh shared inside the community still pays (the
local network charge and levies); ``kappa`` is clipped at 0 (sharing that does not pay is not
done). A member alone has ``v = 0``: it cannot import and export in one interval. This is the
energy-sharing game on fixed schedules (assets are not re-scheduled per coalition, which would
take one optimisation per coalition); it is a sum of ``min`` of two additive measures, a market
game in the sense of Shapley & Shubik [1], so its core is never empty.

The rules
---------
Each rule splits each interval's saving ``kappa_t sh_t`` (``sh_t = min(I_N,t, E_N,t)``, the
energy shared) between the exporting side (a fraction ``alpha_t``, pro rata to each seller's
export) and the importing side (``1 - alpha_t``, pro rata to imports), except the Shapley value:

- ``market``: the design's own internal price ``p_t`` for the shared energy,
  ``alpha_t = (p_t - sell_t) / kappa_t`` (for the community design: the dual of its balance);
- ``marginal``: the competitive price of the pooled positions: all of it to the short side
  (sellers when the community imports on balance, buyers when it exports; half each when
  balanced); this allocation is always in the core;
- ``mid-market`` (MMR, Long et al. [2]): the shared energy at the price halfway between what a
  buyer saves (``buy - local``) and the feed-in tariff, ``alpha_t = 1/2``;
- ``supply-demand-ratio`` (SDR, Liu et al. [3]): with ``SDR = E/I``, the sellers' price
  ``P_s = (b s) / ((b - s) SDR + s)`` for ``SDR < 1`` (``b = buy - local``, ``s = sell``), else
  the feed-in tariff; ``alpha_t = (P_s - s) / (b - s)``;
- ``bill-sharing`` (Long et al. [2], on net positions): the community's grid cost (and local
  charges) shared by its importers per kWh imported, its export revenue by its exporters per kWh
  exported, so the shared energy is free to buyers and unpaid to sellers: ``alpha_t =
  -sell_t / kappa_t`` (sellers lose what the feed-in tariff paid them: the rule is not
  individually rational, and the comparison shows it);
- ``shapley``: each member's average marginal contribution over all orders of joining, exact
  (all ``2^N`` coalitions) up to ``EXACT_SHAPLEY_MEMBERS`` members, sampled over random orders
  beyond (Castro, Gómez & Tejada [4]) with its standard error.

Every rule hands out exactly ``v(N)``. The core check finds the coalition that gains most by
leaving, ``max_S v(S) - x(S)``, exactly by a MILP in HiGHS (binary membership, one ``min``
variable per interval) for any number of members.

References
----------
.. [1] L. S. Shapley, M. Shubik, "On market games", J. Economic Theory 1(1), 9-25, 1969.
.. [2] C. Long, J. Wu, Y. Zhou, N. Jenkins, "Peer-to-peer energy sharing through a two-stage
   aggregated battery control in a community microgrid", Applied Energy 226, 261-276, 2018
   (bill sharing, mid-market rate); C. Long, J. Wu, C. Zhang, L. Thomas, M. Cheng, N. Jenkins,
   "Peer-to-peer energy trading in a community microgrid", IEEE PES GM 2017.
.. [3] N. Liu, X. Yu, C. Wang, C. Li, L. Ma, J. Lei, "Energy-sharing model with price-based
   demand response for microgrids of peer-to-peer prosumers", IEEE Trans. Power Systems 32(5),
   3569-3583, 2017.
.. [4] J. Castro, D. Gómez, J. Tejada, "Polynomial calculation of the Shapley value based on
   sampling", Computers & Operations Research 36(5), 1726-1730, 2009.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lemgrid.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from lemgrid.settlement.bills import Prices

#: Members up to which the Shapley value is computed over all 2^N coalitions.
EXACT_SHAPLEY_MEMBERS = 20
#: Random orders of joining the sampled Shapley value averages over (beyond the exact size).
SHAPLEY_SAMPLES = 2_000
#: Time the core check's MILP may take per allocation [s].
CORE_TIME_LIMIT_S = 30.0
#: The allocation rules, in the order the comparison lists them.
RULES = ("market", "marginal", "mid-market", "supply-demand-ratio", "bill-sharing", "shapley")


@dataclass(frozen=True)
class SharingGame:
    """The energy-sharing game of a community on fixed schedules (see module doc).

    Attributes
    ----------
    import_kwh, export_kwh : ndarray, shape (T, N)
        What each member imports / exports at each interval [kWh], both >= 0.
    buy_eur_per_kwh, sell_eur_per_kwh, local_eur_per_kwh : ndarray, shape (T,)
        Retail price of a kWh from the grid, feed-in tariff, and what a shared kWh still pays.
    member_ids : ndarray of str, shape (N,)
    """

    import_kwh: np.ndarray
    export_kwh: np.ndarray
    buy_eur_per_kwh: np.ndarray
    sell_eur_per_kwh: np.ndarray
    local_eur_per_kwh: np.ndarray
    member_ids: np.ndarray

    @classmethod
    def from_positions(cls, net_import_kw, dt_h: float, buy_eur_per_kwh, sell_eur_per_kwh,
                       local_eur_per_kwh=0.0, member_ids=None) -> SharingGame:
        """The game of net positions ``net_import_kw`` (T, N) [kW, import positive] over
        intervals of ``dt_h`` hours; prices [EUR/kWh] scalars or per interval (T,).

        Raises
        ------
        InputError
            If a position or price is not finite, ``dt_h`` is not positive, or the feed-in
            tariff exceeds the retail price.
        """
        x = np.asarray(net_import_kw, dtype=float)
        if x.ndim != 2 or not np.isfinite(x).all():
            raise InputError("net_import_kw: must be a finite (T, N) array [kW]")
        if not (np.isfinite(dt_h) and dt_h > 0):
            raise InputError(f"dt_h: must be positive, not {dt_h}")
        n_t, n = x.shape
        prices = {}
        for name, value in (("buy_eur_per_kwh", buy_eur_per_kwh),
                            ("sell_eur_per_kwh", sell_eur_per_kwh),
                            ("local_eur_per_kwh", local_eur_per_kwh)):
            p = np.broadcast_to(np.asarray(value, dtype=float), (n_t,)).copy()
            if not np.isfinite(p).all():
                raise InputError(f"{name}: must be finite")
            prices[name] = p
        if (prices["sell_eur_per_kwh"] > prices["buy_eur_per_kwh"]).any():
            raise InputError("sell_eur_per_kwh: the feed-in tariff exceeds the retail price")
        ids = np.arange(n).astype(str) if member_ids is None else np.asarray(member_ids, str)
        return cls(np.maximum(x, 0) * dt_h, np.maximum(-x, 0) * dt_h, member_ids=ids, **prices)

    @classmethod
    def from_result(cls, result, prices: Prices) -> SharingGame:
        """The game of a simulated design's delivered positions (``result.metered_kw``, export
        positive) at the scenario's settlement prices: retail = energy + network + levies, a
        shared kWh pays the local network charge and levies."""
        buy = prices.grid_kwh_eur
        local = prices.local_network_eur_per_kwh + prices.levies_eur_per_kwh
        return cls.from_positions(-np.asarray(result.metered_kw), result.dt_h, buy,
                                  prices.export_eur_per_kwh, local, result.participant_ids)

    @property
    def n_members(self) -> int:
        return self.import_kwh.shape[1]

    @property
    def saving_eur_per_kwh(self) -> np.ndarray:
        """``kappa_t`` (T,): what a kWh shared saves [EUR/kWh], at least 0."""
        return np.maximum(self.buy_eur_per_kwh - self.local_eur_per_kwh
                          - self.sell_eur_per_kwh, 0.0)

    def value_eur(self, members: np.ndarray) -> float:
        """``v(S)`` of the coalition whose members the boolean mask ``members`` (N,) selects."""
        sel = np.asarray(members, dtype=bool)
        shared = np.minimum(self.import_kwh[:, sel].sum(axis=1),
                            self.export_kwh[:, sel].sum(axis=1))
        return float(self.saving_eur_per_kwh @ shared)

    def all_values_eur(self) -> np.ndarray:
        """``v(S)`` of every coalition, indexed by its bit mask (member ``i`` is bit ``i``):
        shape (2^N,).

        Raises
        ------
        InputError
            Beyond ``EXACT_SHAPLEY_MEMBERS`` members (2^N values).
        """
        n = self.n_members
        if n > EXACT_SHAPLEY_MEMBERS:
            raise InputError(f"members: {n} are too many to enumerate 2^{n} coalitions "
                             f"(at most {EXACT_SHAPLEY_MEMBERS})")
        kappa = self.saving_eur_per_kwh
        values = np.zeros(1 << n)
        # only intervals with both importers and exporters share anything
        both = (self.import_kwh.sum(axis=1) > 0) & (self.export_kwh.sum(axis=1) > 0)
        for t in np.flatnonzero((kappa > 0) & both):
            imp, exp = np.zeros(1), np.zeros(1)
            for i in range(n):  # coalitions with bit i set follow those without it
                imp = np.concatenate([imp, imp + self.import_kwh[t, i]])
                exp = np.concatenate([exp, exp + self.export_kwh[t, i]])
            values += kappa[t] * np.minimum(imp, exp)
        return values


def _split(game: SharingGame, alpha: np.ndarray) -> np.ndarray:
    """Each interval's saving, ``alpha_t`` of it to the sellers pro rata to their exports and
    the rest to the buyers pro rata to their imports [EUR per member]."""
    imp, exp = game.import_kwh.sum(axis=1), game.export_kwh.sum(axis=1)
    saving = game.saving_eur_per_kwh * np.minimum(imp, exp)
    with np.errstate(invalid="ignore", divide="ignore"):
        to_sellers = np.where(exp > 0, alpha * saving / exp, 0.0)
        to_buyers = np.where(imp > 0, (1 - alpha) * saving / imp, 0.0)
    return to_sellers @ game.export_kwh + to_buyers @ game.import_kwh


def shapley_eur(game: SharingGame, samples: int = SHAPLEY_SAMPLES,
                rng: np.random.Generator | None = None,
                exact_up_to: int = EXACT_SHAPLEY_MEMBERS) -> tuple[np.ndarray, np.ndarray]:
    """The Shapley value of each member [EUR] and its standard error [EUR] (zero when exact).

    Exact over all coalitions up to ``exact_up_to`` members (at most
    ``EXACT_SHAPLEY_MEMBERS``); beyond, the mean of the marginal contributions over ``samples``
    random orders of joining [4] (each order hands out exactly ``v(N)``, so the estimates add
    up to it).
    """
    n = game.n_members
    if n <= min(exact_up_to, EXACT_SHAPLEY_MEMBERS):
        values = game.all_values_eur()
        masks = np.arange(1 << n)
        size = np.zeros(1 << n, dtype=int)
        for i in range(n):
            size += (masks >> i) & 1
        # weight of a coalition of s members joined by one more: s! (n - s - 1)! / n!
        weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n)
                           for s in range(n)])
        phi = np.empty(n)
        for i in range(n):
            without = masks[(masks >> i) & 1 == 0]
            phi[i] = weight[size[without]] @ (values[without | (1 << i)] - values[without])
        return phi, np.zeros(n)
    rng = rng or np.random.default_rng(0)
    kappa = game.saving_eur_per_kwh
    draws = np.empty((samples, n))
    for k in range(samples):
        order = rng.permutation(n)
        shared = np.minimum(np.cumsum(game.import_kwh[:, order], axis=1),
                            np.cumsum(game.export_kwh[:, order], axis=1))
        value = kappa @ shared  # v of each prefix of the order
        draws[k, order] = np.diff(value, prepend=0.0)
    return draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(samples)


def allocate_eur(game: SharingGame, rule: str, market_price_eur_per_kwh=None,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Each member's share of the community's saving under ``rule`` (one of :data:`RULES`)
    [EUR]; they add up to ``v(N)``.

    Parameters
    ----------
    market_price_eur_per_kwh : array (T,), optional
        The design's internal price (rule ``market``; NaN where nothing was shared).

    Raises
    ------
    InputError
        For an unknown rule, or ``market`` without prices.
    """
    kappa = game.saving_eur_per_kwh
    imp, exp = game.import_kwh.sum(axis=1), game.export_kwh.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if rule == "shapley":
            return shapley_eur(game, rng=rng)[0]
        if rule == "market":
            if market_price_eur_per_kwh is None:
                raise InputError("rule market: needs the design's internal prices")
            price = np.asarray(market_price_eur_per_kwh, dtype=float)
            alpha = np.where(kappa > 0, (price - game.sell_eur_per_kwh) / kappa, 0.5)
            alpha = np.where(np.isfinite(alpha), alpha, 0.5)
        elif rule == "marginal":
            alpha = np.where(imp > exp, 1.0, np.where(exp > imp, 0.0, 0.5))
        elif rule == "mid-market":
            alpha = np.full(len(kappa), 0.5)
        elif rule == "supply-demand-ratio":
            b = game.buy_eur_per_kwh - game.local_eur_per_kwh
            s = game.sell_eur_per_kwh
            ratio = np.where(imp > 0, exp / imp, np.inf)
            seller_price = np.where(ratio < 1, b * s / ((b - s) * ratio + s), s)
            alpha = np.where(kappa > 0, (seller_price - s) / kappa, 0.5)
        elif rule == "bill-sharing":
            alpha = np.where(kappa > 0, -game.sell_eur_per_kwh / kappa, 0.5)
        else:
            raise InputError(f"rule: {rule!r} is not one of {', '.join(RULES)}")
    return _split(game, alpha)


class CoreCheck(NamedTuple):
    """What the core check found.

    Attributes
    ----------
    excess_eur : float
        What the best coalition found gains by leaving, ``v(S) - x(S)`` (at least 0) [EUR].
    bound_eur : float
        No coalition gains more (HiGHS's dual bound) [EUR]; equals ``excess_eur`` when proven.
    members : ndarray of bool, shape (N,)
        That coalition.
    proven : bool
        Whether HiGHS proved it optimal within the time limit.
    """

    excess_eur: float
    bound_eur: float
    members: np.ndarray
    proven: bool

    def in_core(self, tolerance_eur: float) -> bool | None:
        """True if no coalition gains more than ``tolerance_eur``, False if one does, None if
        the time limit left it open."""
        if self.excess_eur > tolerance_eur:
            return False
        return True if self.bound_eur <= tolerance_eur else None


def core_excess(game: SharingGame, allocation_eur, time_limit_s: float = CORE_TIME_LIMIT_S
                ) -> CoreCheck:
    """The most any coalition gains by leaving the allocation, ``max_S v(S) - x(S)`` [EUR]
    (0: the allocation is in the core), by a MILP solved with HiGHS (``scipy.optimize.milp``):
    binary membership ``z``, per interval ``m_t <= I(z)_t`` and ``m_t <= E(z)_t``, maximise
    ``sum_t kappa_t m_t - x z``. Within ``time_limit_s`` it is exact; a larger community may
    leave a gap between the best coalition found and HiGHS's bound (:class:`CoreCheck`).

    Raises
    ------
    InfeasibleError
        If HiGHS finds no coalition at all (the empty one is always feasible: a solver error).
    """
    from scipy.optimize import LinearConstraint, milp
    from scipy.sparse import eye, hstack, vstack

    from lemgrid.errors import InfeasibleError

    x = np.asarray(allocation_eur, dtype=float)
    kappa = game.saving_eur_per_kwh
    n, n_t = game.n_members, len(kappa)
    cost = np.concatenate([x, -kappa])  # minimise x z - kappa m
    rows = vstack([hstack([-game.import_kwh, eye(n_t)]), hstack([-game.export_kwh, eye(n_t)])])
    result = milp(cost, constraints=LinearConstraint(rows.tocsr(), -np.inf, 0.0),
                  integrality=np.concatenate([np.ones(n), np.zeros(n_t)]),
                  bounds=(np.zeros(n + n_t), np.concatenate([np.ones(n),
                                                             np.full(n_t, np.inf)])),
                  options={"mip_rel_gap": 0.0, "time_limit": time_limit_s})
    if result.x is None:
        raise InfeasibleError(f"core check: HiGHS found no coalition ({result.message})")
    members = result.x[:n] > 0.5
    excess = max(game.value_eur(members) - float(x[members].sum()), 0.0)
    proven = result.status == 0
    bound = excess if proven else max(-float(result.mip_dual_bound), excess)
    return CoreCheck(excess, bound, members, proven)


def compare_rules(game: SharingGame, market_price_eur_per_kwh=None,
                  rng: np.random.Generator | None = None,
                  progress: Callable[[int, int], None] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every rule of :data:`RULES` (``market`` only with prices) on the same game;
    ``progress(done, total)`` after each rule's core check.

    Returns
    -------
    kpis : pandas.DataFrame
        One row per rule: ``saving_eur`` (``v(N)``, the same for all), ``share_better_off``
        (members with a positive share), ``share_worse_off`` (a negative one: they pay more than
        alone), ``gini`` (of the shares; NaN when they add up to zero), ``in_core`` (None
        when the core check's time limit left it open), ``core_excess_eur`` (the most a
        coalition found gains by leaving), ``core_bound_eur`` (no coalition gains more) and
        ``blocking_members``.
    shares : pandas.DataFrame
        Each member's share under each rule [EUR] (members x rules).
    """
    import pandas as pd

    from lemgrid.settlement.kpis import gini

    rules = [r for r in RULES if r != "market" or market_price_eur_per_kwh is not None]
    shares = pd.DataFrame({r: allocate_eur(game, r, market_price_eur_per_kwh, rng)
                           for r in rules}, index=pd.Index(game.member_ids, name="member"))
    total = game.value_eur(np.ones(game.n_members, bool))
    tol = 1e-9 * max(1.0, abs(total))
    rows = []
    for r in rules:
        phi = shares[r].to_numpy()
        check = core_excess(game, phi)
        g = gini(phi)
        in_core = check.in_core(1e-6 * max(1.0, total))
        rows.append({"rule": r, "saving_eur": float(phi.sum()),
                     "share_better_off": float((phi > tol).mean()),
                     "share_worse_off": float((phi < -tol).mean()),
                     "gini": np.nan if g is None else g, "in_core": in_core,
                     "core_excess_eur": check.excess_eur, "core_bound_eur": check.bound_eur,
                     "blocking_members": ",".join(game.member_ids[check.members])
                     if in_core is False else ""})
        if progress is not None:
            progress(len(rows), len(rules))
    return pd.DataFrame(rows).set_index("rule"), shares
