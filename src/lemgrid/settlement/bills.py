"""Settlement: what every participant pays in every interval, and to whom.

Every euro has a payer and a payee. Participants pay (or are paid by)

- the **market** (other participants, or the community) for what they committed to buy from and
  sell to other participants; whatever the market keeps (a pay-as-bid spread) is handed back to
  the participants in equal shares, so the market account ends at zero;
- the **community**, under the community design, a benefit-sharing transfer that moves money
  between its members only (it adds up to zero in every interval; see ``docs/community.md``);
- the **retailer** for everything else they draw or feed in, as metered, at the import price /
  feed-in tariff, exactly as without a market; only energy a participant committed in the market
  and did not deliver is imbalance: a seller's shortfall at the short price, a buyer's unused
  purchase at the long price;
- the **DSO** the network charge on grid imports and the (lower) local network charge on energy
  bought from other participants, and the fixed fee;
- the **state** the levies on every kWh consumed from the market, the grid or imbalance.

Flexibility markets add payments from their buyers (the DSO, the TSO) to providers, part of which
an aggregator keeps as its fee, and non-delivery penalties back to the buyers.

Hence the identity that tests check for every design: the sum of all participants' costs equals
what goes to the retailer, the DSO, the state, the TSO and aggregators (budget balance; the DSO's
and TSO's receipts are net of what they pay for flexibility).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lemgrid.errors import InputError


@dataclass(frozen=True)
class Prices:
    """All prices of the settlement [EUR/kWh unless stated]."""

    import_eur_per_kwh: float
    network_eur_per_kwh: float
    export_eur_per_kwh: float
    local_network_eur_per_kwh: float
    levies_eur_per_kwh: float
    fixed_eur_per_day: float
    imbalance_short_eur_per_kwh: float
    imbalance_long_eur_per_kwh: float

    @property
    def retail_eur_per_kwh(self) -> float:
        """What a kWh from the grid costs before levies (energy + network)."""
        return self.import_eur_per_kwh + self.network_eur_per_kwh

    @property
    def grid_kwh_eur(self) -> float:
        """What a kWh from the grid costs a member in all (energy + network + levies)."""
        return self.retail_eur_per_kwh + self.levies_eur_per_kwh

    @classmethod
    def from_scenario(cls, scenario) -> Prices:
        t, s = scenario.tariffs, scenario.config.settlement
        retail = t.import_eur_per_kwh + t.network_eur_per_kwh
        return cls(
            import_eur_per_kwh=t.import_eur_per_kwh, network_eur_per_kwh=t.network_eur_per_kwh,
            export_eur_per_kwh=t.export_eur_per_kwh,
            local_network_eur_per_kwh=s.local_network_eur_per_kwh,
            levies_eur_per_kwh=s.levies_eur_per_kwh, fixed_eur_per_day=s.fixed_eur_per_day,
            imbalance_short_eur_per_kwh=retail if s.imbalance_short_eur_per_kwh is None
            else s.imbalance_short_eur_per_kwh,
            imbalance_long_eur_per_kwh=t.export_eur_per_kwh if s.imbalance_long_eur_per_kwh is None
            else s.imbalance_long_eur_per_kwh,
        )


class LocalFills(NamedTuple):
    """Local fills summed per interval and participant (T, N)."""

    bought_kwh: np.ndarray
    sold_kwh: np.ndarray
    paid_eur: np.ndarray  # paid for local energy (negative: received) [EUR]


def local_fills(shape: tuple[int, int], interval: np.ndarray, participant: np.ndarray,
                bought_kwh: np.ndarray, sold_kwh: np.ndarray, paid_eur: np.ndarray
                ) -> LocalFills:
    """Sum fill rows (orders' fills, the two sides of bilateral trades) into (T, N) tables.

    Parameters
    ----------
    shape : (T, N)
    interval, participant : ndarray of int, shape (F,)
        Interval and participant of each fill row.
    bought_kwh, sold_kwh : ndarray, shape (F,)
        Energy the row's participant bought / sold in it [kWh] (0 for the other side).
    paid_eur : ndarray, shape (F,)
        What it paid for it (negative: was paid) [EUR].
    """
    out = LocalFills(np.zeros(shape), np.zeros(shape), np.zeros(shape))
    at = (interval, participant)
    np.add.at(out.bought_kwh, at, bought_kwh)
    np.add.at(out.sold_kwh, at, sold_kwh)
    np.add.at(out.paid_eur, at, paid_eur)
    return out


@dataclass(frozen=True, eq=False)
class Positions:
    """A market's outcome over T intervals for N participants (energies in kWh per interval).

    Attributes
    ----------
    scheduled_kw : ndarray (T, N)
        Scheduled net injection [kW], export positive.
    market_bought_kwh, market_sold_kwh : ndarray (T, N)
        Energy committed in the market: bought from / sold to other participants (directly or
        through the community).
    local_bought_kwh, local_sold_kwh : ndarray (T, N)
        The part of it that came from / went to other participants (all of it in every design
        today; kept apart for the local network charge).
    market_paid_eur : ndarray (T, N)
        Money paid to the market for those purchases minus money received for sales.
    retail_import_kwh, retail_export_kwh : ndarray (T, N)
        The rest of the schedule, with the retailer (a plan, not a commitment: the retailer takes
        what is metered).
    price_eur_per_kwh : ndarray (T,)
        Local price (NaN where nothing traded locally).
    sharing_eur : ndarray (T, N), optional
        Benefit-sharing transfers between community members [EUR] (each interval's sum is zero).
    """

    scheduled_kw: np.ndarray
    market_bought_kwh: np.ndarray
    market_sold_kwh: np.ndarray
    local_bought_kwh: np.ndarray
    local_sold_kwh: np.ndarray
    market_paid_eur: np.ndarray
    retail_import_kwh: np.ndarray
    retail_export_kwh: np.ndarray
    price_eur_per_kwh: np.ndarray
    sharing_eur: np.ndarray | None = None

    @classmethod
    def retail_only(cls, net_kw: np.ndarray, dt_h: float) -> Positions:
        """Business-as-usual: every kWh goes to / comes from the retailer, no local market."""
        zeros = np.zeros_like(net_kw)
        return cls(
            scheduled_kw=net_kw, market_bought_kwh=zeros, market_sold_kwh=zeros,
            local_bought_kwh=zeros, local_sold_kwh=zeros, market_paid_eur=zeros,
            retail_import_kwh=np.maximum(-net_kw, 0) * dt_h,
            retail_export_kwh=np.maximum(net_kw, 0) * dt_h,
            price_eur_per_kwh=np.full(len(net_kw), np.nan))

    @classmethod
    def from_local_fills(cls, scheduled_kw: np.ndarray, fills: LocalFills, dt_h: float,
                         price_eur_per_kwh: np.ndarray) -> Positions:
        """A schedule whose local fills are market commitments; the rest of each participant's
        schedule is exchanged with the retailer."""
        retail = scheduled_kw * dt_h - (fills.sold_kwh - fills.bought_kwh)
        return cls(
            scheduled_kw=scheduled_kw, market_bought_kwh=fills.bought_kwh,
            market_sold_kwh=fills.sold_kwh, local_bought_kwh=fills.bought_kwh,
            local_sold_kwh=fills.sold_kwh, market_paid_eur=fills.paid_eur,
            retail_import_kwh=np.maximum(-retail, 0), retail_export_kwh=np.maximum(retail, 0),
            price_eur_per_kwh=price_eur_per_kwh)

    @property
    def local_volume_kwh(self) -> np.ndarray:
        return self.local_bought_kwh.sum(axis=1)

    def shifted(self, delta_kw: np.ndarray, dt_h: float) -> Positions:
        """The schedule moved by ``delta_kw`` (e.g. activated flexibility): the change is
        exchanged with the retailer, market commitments stay."""
        from dataclasses import replace

        scheduled = self.scheduled_kw + delta_kw
        retail = scheduled * dt_h - (self.market_sold_kwh - self.market_bought_kwh)
        return replace(self, scheduled_kw=scheduled, retail_import_kwh=np.maximum(-retail, 0),
                       retail_export_kwh=np.maximum(retail, 0))

    def check(self, dt_h: float, tol_kwh: float = 1e-6) -> None:
        """The positions add up to the schedule of every participant."""
        energy = (self.market_sold_kwh - self.market_bought_kwh + self.retail_export_kwh
                  - self.retail_import_kwh)
        gap = np.abs(energy - self.scheduled_kw * dt_h)
        if gap.max(initial=0) > tol_kwh:
            t, n = np.unravel_index(np.argmax(gap), gap.shape)
            raise InputError(f"settlement: positions of participant {n} in interval {t} do not add "
                             f"up to its schedule ({gap[t, n]:.3g} kWh apart)")


@dataclass(frozen=True, eq=False)
class FlexMoney:
    """Money of flexibility markets per interval.

    Attributes
    ----------
    income_eur : ndarray (T, N)
        What each participant receives (availability and utilisation after its aggregator's fee,
        minus non-delivery penalties).
    paid_by_buyer_eur : dict[str, ndarray (T,)]
        What each buyer ('DSO', 'TSO', ...) pays net of the penalties it receives.
    aggregator_fee_eur : ndarray (T,)
        What aggregators keep.
    """

    income_eur: np.ndarray
    paid_by_buyer_eur: dict
    aggregator_fee_eur: np.ndarray

    @classmethod
    def none(cls, n_t: int, n: int) -> FlexMoney:
        return cls(np.zeros((n_t, n)), {}, np.zeros(n_t))


#: The parts of a participant's cost (fields of :class:`Bill`, EUR per interval and participant).
BILL_COMPONENTS = ("market_eur", "surplus_share_eur", "sharing_eur", "retail_energy_eur",
                   "network_eur", "imbalance_eur", "levies_eur", "fixed_eur", "flex_eur")


@dataclass(frozen=True, eq=False)
class Bill:
    """Costs per interval and participant [EUR] (positive: the participant pays), by component,
    the energies they were computed on [kWh], and what each counterparty receives per interval.

    ``retail_import_kwh``/``retail_export_kwh`` are settled with the retailer at the import price /
    feed-in tariff, ``imbalance_short_kwh``/``imbalance_long_kwh`` at the imbalance prices; with
    the market's commitments they add up to what was metered:
    ``metered x dt = sold - bought + retail_export - retail_import + long - short``.
    ``import_kwh``/``export_kwh`` are the participant's own metered import / export that no local
    trade covers (at most what it consumed / generated).
    """

    market_eur: np.ndarray
    surplus_share_eur: np.ndarray
    sharing_eur: np.ndarray
    retail_energy_eur: np.ndarray
    network_eur: np.ndarray
    imbalance_eur: np.ndarray
    levies_eur: np.ndarray
    fixed_eur: np.ndarray
    flex_eur: np.ndarray
    retail_import_kwh: np.ndarray
    retail_export_kwh: np.ndarray
    import_kwh: np.ndarray
    export_kwh: np.ndarray
    imbalance_short_kwh: np.ndarray
    imbalance_long_kwh: np.ndarray
    retailer_eur: np.ndarray
    dso_eur: np.ndarray
    state_eur: np.ndarray
    tso_eur: np.ndarray
    aggregator_eur: np.ndarray

    @property
    def cost_eur(self) -> np.ndarray:
        return sum(getattr(self, name) for name in BILL_COMPONENTS)

    @property
    def budget_gap_eur(self) -> float:
        """Participants' total minus what retailer, DSO, state, TSO and aggregators receive
        (0 up to rounding)."""
        received = (self.retailer_eur + self.dso_eur + self.state_eur + self.tso_eur
                    + self.aggregator_eur)
        return float(self.cost_eur.sum() - received.sum())


def settle(positions: Positions, metered_kw: np.ndarray, prices: Prices, dt_h: float,
           flex: FlexMoney | None = None) -> Bill:
    """Settle a market outcome against metered deliveries.

    What a participant committed in the market (``market_sold - market_bought``) is paid at the
    market's prices; everything else it meters is exchanged with the retailer as without a market
    (import price plus network charge, feed-in tariff). Only the part of that exchange that
    breaks a commitment is imbalance: a seller importing what it sold (short price), a buyer
    exporting what it bought (long price). A schedule is a plan; only market commitments bind.

    Parameters
    ----------
    positions : Positions
    metered_kw : ndarray (T, N)
        Metered net injection [kW], export positive.
    prices : Prices
    dt_h : float
        Interval length [h].
    flex : FlexMoney, optional
        Payments of flexibility markets (DSO and TSO buyers, aggregators).
    """
    positions.check(dt_h)
    p = positions
    n_t, n = metered_kw.shape
    flex = flex if flex is not None else FlexMoney.none(n_t, n)
    other_buyers = sum((v for k, v in flex.paid_by_buyer_eur.items() if k != "DSO"),
                       np.zeros(n_t))
    metered_kwh = metered_kw * dt_h
    committed = p.market_sold_kwh - p.market_bought_kwh
    outside = metered_kwh - committed  # exchanged with the retailer, export positive
    short = np.clip(-outside, 0, np.maximum(committed, 0))
    long = np.clip(outside, 0, np.maximum(-committed, 0))
    retail_import = np.maximum(-outside, 0) - short
    retail_export = np.maximum(outside, 0) - long
    surplus = p.market_paid_eur.sum(axis=1)
    consumed = p.market_bought_kwh + retail_import + short
    fixed = np.full(metered_kw.shape, prices.fixed_eur_per_day * dt_h / 24.0)
    retail_energy = (retail_import * prices.import_eur_per_kwh
                     - retail_export * prices.export_eur_per_kwh)
    network = (retail_import * prices.network_eur_per_kwh
               + p.local_bought_kwh * prices.local_network_eur_per_kwh)
    imbalance = (short * prices.imbalance_short_eur_per_kwh
                 - long * prices.imbalance_long_eur_per_kwh)
    levies = consumed * prices.levies_eur_per_kwh
    sharing = np.zeros_like(metered_kw) if p.sharing_eur is None else p.sharing_eur
    return Bill(
        market_eur=p.market_paid_eur,
        surplus_share_eur=np.repeat(-surplus[:, None] / max(n, 1), n, axis=1),
        sharing_eur=sharing, retail_energy_eur=retail_energy, network_eur=network,
        imbalance_eur=imbalance, levies_eur=levies, fixed_eur=fixed, flex_eur=-flex.income_eur,
        retail_import_kwh=retail_import, retail_export_kwh=retail_export,
        import_kwh=np.minimum(np.maximum(-outside, 0), np.maximum(-metered_kwh, 0)),
        export_kwh=np.minimum(np.maximum(outside, 0), np.maximum(metered_kwh, 0)),
        imbalance_short_kwh=short, imbalance_long_kwh=long,
        retailer_eur=retail_energy.sum(axis=1) + imbalance.sum(axis=1),
        dso_eur=network.sum(axis=1) + fixed.sum(axis=1)
        - flex.paid_by_buyer_eur.get("DSO", np.zeros(n_t)),
        state_eur=levies.sum(axis=1),
        tso_eur=-other_buyers,
        aggregator_eur=flex.aggregator_fee_eur,
    )
