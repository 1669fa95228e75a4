"""Energy and flexibility from the same batteries on a scenario's day
(:mod:`lemgrid.market.joint`): the joint day-ahead clearing against the sequential markets.

The community is the scenario's participants with their batteries (other flexible kinds are
left out of this comparison), on the day's realised profiles (perfect forecasts: the difference
between the clearings is the market design's, not the forecast's); the DSO's need is a capacity
up and/or down over a daily window of the grid's local time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lemgrid.errors import InputError
from lemgrid.market.joint import FlexDay, clear_joint, clear_sequential

if TYPE_CHECKING:
    import pandas as pd

    from lemgrid.scenario.build import Scenario


def flex_day(scenario: Scenario, day: int, need_up_kw: float, need_down_kw: float,
             window: tuple[str, str], alternative_eur_per_kw_h: float) -> FlexDay:
    """The day's community and the DSO's need over ``window`` (from, to; local clock times).

    Raises
    ------
    InputError
        If the day is outside the horizon, the scenario has no batteries, a need is negative or
        the window is not two clock times.
    """
    from lemgrid.grid.profiles import clock_h, in_daily_window
    from lemgrid.scenario.config import clock_hours
    from lemgrid.settlement.bills import Prices
    from lemgrid.sim.stochastic import day_batteries

    if need_up_kw < 0 or need_down_kw < 0:
        raise InputError("need: the DSO's need for capacity may not be negative [kW]")
    try:
        start_h, end_h = clock_hours(window[0]), clock_hours(window[1])
    except (ValueError, TypeError):
        raise InputError(f"window: {window!r} is not two clock times (HH:MM)") from None
    start, stop, batteries = day_batteries(scenario, day, "the joint clearing holds capacity in")
    parts = scenario.participants
    inside = in_daily_window(clock_h(scenario.time_index[start:stop]), start_h, end_h)
    prices = Prices.from_scenario(scenario)
    return FlexDay(
        net_load_kw=(parts.load_p_kw[start:stop] - parts.pv_p_kw[start:stop]).sum(axis=1),
        batteries=batteries, dt_h=float(scenario.dt_h),
        buy_eur_per_kwh=prices.grid_kwh_eur,
        sell_eur_per_kwh=prices.export_eur_per_kwh,
        need_up_kw=np.where(inside, need_up_kw, 0.0),
        need_down_kw=np.where(inside, need_down_kw, 0.0),
        alternative_eur_per_kw_h=alternative_eur_per_kw_h)


def compare_energy_flexibility(day: FlexDay) -> pd.DataFrame:
    """The sequential and the joint clearing of a day, one row each: ``energy_cost_eur``,
    ``alternative_cost_eur``, ``system_cost_eur``, ``held_up_kwh``, ``held_down_kwh`` (capacity
    hours the batteries hold for the DSO), ``need_up_kwh``, ``need_down_kwh``."""
    import pandas as pd

    rows = []
    for name, clearing in (("sequential", clear_sequential(day)), ("joint", clear_joint(day))):
        rows.append({"clearing": name, "energy_cost_eur": clearing.energy_cost_eur,
                     "alternative_cost_eur": clearing.alternative_cost_eur,
                     "system_cost_eur": clearing.system_cost_eur,
                     "held_up_kwh": float(clearing.up_kw.sum() * day.dt_h),
                     "held_down_kwh": float(clearing.down_kw.sum() * day.dt_h),
                     "need_up_kwh": float(np.sum(day.need_up_kw) * day.dt_h),
                     "need_down_kwh": float(np.sum(day.need_down_kw) * day.dt_h)})
    return pd.DataFrame(rows).set_index("clearing")
