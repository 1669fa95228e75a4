"""The seam between the drivers, the market designs and the DSO: a day-ahead session, the plan
of the participants' assets, and what a design makes of a session.

Both drivers build :class:`DayAheadSession` (the simulator on a simulated clock, the market
server on wall time); a design (:mod:`lemgrid.designs`) turns it into a :class:`SessionOutcome`;
the DSO checks and adjusts its :class:`AssetPlan`. This module sits below all of them and
imports none of them at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lemgrid.assets.tables import KindTableViews

if TYPE_CHECKING:
    import pandas as pd

    from lemgrid.agents.strategies import ZipTraders
    from lemgrid.assets.kinds import KindPlan
    from lemgrid.scenario import Scenario
    from lemgrid.settlement.bills import Positions, Prices


def to_owners(values: np.ndarray, owner: np.ndarray, n_participants: int) -> np.ndarray:
    """Sum per-asset columns (T, A) into their owners' columns (T, N)."""
    out = np.zeros((values.shape[0], n_participants))
    np.add.at(out.T, owner, values.T)  # column k of values into column owner[k] of out
    return out


def net_injection_kw(pv_kw: np.ndarray, curtailment_kw: np.ndarray | float, load_kw: np.ndarray,
                     asset_kw: np.ndarray) -> np.ndarray:
    """A participant's net injection (T, N), export positive [kW]: PV minus curtailment minus
    inflexible load plus its assets' net output (all kinds: batteries' discharge minus charge
    minus EVs', shiftable loads' and heat pumps' consumption). The one place this balance is
    written."""
    return pv_kw - curtailment_kw - load_kw + asset_kw


@dataclass(eq=False)
class DayAheadSession(KindTableViews):
    """One day-ahead market session.

    Attributes
    ----------
    scenario : Scenario
    start, stop : int
        Intervals of the horizon covered.
    load_kw, pv_kw : ndarray (Td, N)
        Forecasts of the participants' inflexible load and PV [kW].
    prices : Prices
    agents : ndarray of str (N,)
        Bidding strategy of each participant.
    rng : numpy.random.Generator
    zip_traders : ZipTraders or None
    price_forecast : ndarray (Td,)
        What optimising agents expect the local price to be [EUR/kWh].
    background_p_kw, q_kvar : ndarray (Td, n_bus)
        Forecast injections of non-participants and reactive injections (network-constrained).
    kinds : dict[str, column table]
        The participants' flexible assets by kind (:mod:`lemgrid.assets.kinds`), cut to the
        session (windows' indices relative to ``start``), with the state carried over from the
        previous session (e.g. batteries' ``soc_initial``).
    """

    scenario: Scenario
    start: int
    stop: int
    load_kw: np.ndarray
    pv_kw: np.ndarray
    prices: Prices
    agents: np.ndarray
    rng: np.random.Generator
    zip_traders: ZipTraders | None
    price_forecast: np.ndarray
    background_p_kw: np.ndarray
    q_kvar: np.ndarray
    kinds: dict = field(default_factory=dict)

    @property
    def dt_h(self) -> float:
        return self.scenario.dt_h

    @property
    def time_index(self) -> pd.DatetimeIndex:
        """The session's intervals (their starts, the grid's local time)."""
        return self.scenario.time_index[self.start:self.stop]

    @property
    def shape(self) -> tuple[int, int]:
        return self.load_kw.shape

    @property
    def buyer_value(self) -> float:
        """Most a buyer pays locally: the grid alternative minus the local network charge."""
        return self.prices.retail_eur_per_kwh - self.prices.local_network_eur_per_kwh

    @property
    def seller_cost(self) -> float:
        """Least a seller accepts locally: the feed-in tariff."""
        return self.prices.export_eur_per_kwh


@dataclass(eq=False)
class AssetPlan:
    """How every flexible asset runs in a session.

    Attributes
    ----------
    curtailment_kw : ndarray (Td, N)
        Curtailed PV [kW].
    kinds : dict[str, KindPlan]
        How the assets of each kind run, by kind name (:mod:`lemgrid.assets.kinds`).
    """

    curtailment_kw: np.ndarray
    kinds: dict[str, KindPlan] = field(default_factory=dict)

    def _of(self, name: str, field_name: str, sign: float = 1.0) -> np.ndarray:
        plan = self.kinds.get(name)
        if plan is None:
            return np.zeros((self.curtailment_kw.shape[0], 0))
        return sign * getattr(plan, field_name)

    @property
    def battery_kw(self) -> np.ndarray:
        """Net output of each battery (Td, B), discharge positive [kW] (read-only view)."""
        return self._of("battery", "output_kw")

    @property
    def soc_kwh(self) -> np.ndarray:
        """Energy in each battery at the end of each interval (Td, B) [kWh] (read-only view)."""
        return self._of("battery", "state")

    @property
    def window_kw(self) -> np.ndarray:
        """Power drawn by each EV / shiftable-load window (Td, S) [kW] (read-only view)."""
        return self._of("energy_window", "output_kw", -1.0)

    def asset_kw(self, n: int) -> np.ndarray:
        """All assets' net output per participant (Td, N) [kW]: batteries' discharge minus
        charge minus EVs', shiftable loads' and heat pumps' consumption."""
        from lemgrid.assets.kinds import kinds_to_owners

        return kinds_to_owners(self.kinds, n, self.curtailment_kw.shape[0])

    def net_injection_kw(self, load_kw: np.ndarray, pv_kw: np.ndarray) -> np.ndarray:
        """Net injection (Td, N) of this plan on given load and PV profiles [kW]."""
        return net_injection_kw(pv_kw, self.curtailment_kw, load_kw,
                                self.asset_kw(load_kw.shape[1]))


@dataclass(eq=False)
class SessionOutcome:
    """Positions of the session and how the assets are to run.

    Attributes
    ----------
    positions : Positions
    plan : AssetPlan
    extra : dict[str, ndarray (Td,)]
        Design-specific per-interval series for intervals.parquet.
    tables : dict[str, pandas.DataFrame]
        Design-specific tables of the session with an ``interval`` column of timestamps (e.g.
        ``dlmp_components``, ``p2p_trades``); the runner appends the sessions' tables into
        ``SimulationResult.tables``.
    """

    positions: Positions
    plan: AssetPlan
    extra: dict = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def net_kw(session: DayAheadSession, plan: AssetPlan) -> np.ndarray:
    """Scheduled net injection (Td, N) of a plan on the session's forecasts [kW]."""
    return plan.net_injection_kw(session.load_kw, session.pv_kw)
