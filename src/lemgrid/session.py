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

if TYPE_CHECKING:
    from lemgrid.agents.strategies import ZipTraders
    from lemgrid.assets.kinds import KindPlan
    from lemgrid.assets.tables import Batteries, EnergyWindows
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
    inflexible load plus its assets' net output (batteries' discharge minus charge minus EV and
    shiftable-load consumption). The one place this balance is written."""
    return pv_kw - curtailment_kw - load_kw + asset_kw


@dataclass(eq=False)
class DayAheadSession:
    """One day-ahead market session.

    Attributes
    ----------
    scenario : Scenario
    start, stop : int
        Intervals of the horizon covered.
    load_kw, pv_kw : ndarray (Td, N)
        Forecasts of the participants' inflexible load and PV [kW].
    batteries : Batteries
        With ``soc_initial`` carried over from the previous session.
    windows : EnergyWindows
        Windows of EVs and shiftable loads inside this session (indices relative to ``start``).
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
        Assets of registered kinds, cut to the session, with the state carried over.
    """

    scenario: Scenario
    start: int
    stop: int
    load_kw: np.ndarray
    pv_kw: np.ndarray
    batteries: Batteries
    windows: EnergyWindows
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
    battery_kw : ndarray (Td, B)
        Net output of each battery (discharge positive) [kW].
    soc_kwh : ndarray (Td, B)
        Energy in each battery at the end of each interval [kWh].
    window_kw : ndarray (Td, S)
        Power drawn by each EV / shiftable-load session of the day [kW].
    curtailment_kw : ndarray (Td, N)
        Curtailed PV [kW].
    kinds : dict[str, KindPlan]
        How the assets of registered kinds run, by kind name.
    """

    battery_kw: np.ndarray
    soc_kwh: np.ndarray
    window_kw: np.ndarray
    curtailment_kw: np.ndarray
    kinds: dict[str, KindPlan] = field(default_factory=dict)

    def asset_kw(self, batteries: Batteries, windows: EnergyWindows, n: int) -> np.ndarray:
        """Batteries' and other kinds' output minus windows' consumption per participant
        (Td, N) [kW]."""
        out = (to_owners(self.battery_kw, batteries.owner, n)
               - to_owners(self.window_kw, windows.owner, n))
        if self.kinds:
            from lemgrid.assets.kinds import kinds_to_owners

            out = out + kinds_to_owners(self.kinds, n, out.shape[0])
        return out

    def net_injection_kw(self, load_kw: np.ndarray, pv_kw: np.ndarray, batteries: Batteries,
                         windows: EnergyWindows) -> np.ndarray:
        """Net injection (Td, N) of this plan on given load and PV profiles [kW]."""
        return net_injection_kw(pv_kw, self.curtailment_kw, load_kw,
                                self.asset_kw(batteries, windows, load_kw.shape[1]))


@dataclass(eq=False)
class SessionOutcome:
    """Positions of the session and how the assets are to run.

    Attributes
    ----------
    positions : Positions
    plan : AssetPlan
    extra : dict[str, ndarray (Td,)]
        Design-specific per-interval series for intervals.parquet.
    """

    positions: Positions
    plan: AssetPlan
    extra: dict = field(default_factory=dict)


def net_kw(session: DayAheadSession, plan: AssetPlan) -> np.ndarray:
    """Scheduled net injection (Td, N) of a plan on the session's forecasts [kW]."""
    return plan.net_injection_kw(session.load_kw, session.pv_kw, session.batteries,
                                 session.windows)
