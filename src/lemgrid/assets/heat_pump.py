"""Heat pumps with thermal storage: an asset kind (see :mod:`lemgrid.assets.kinds`).

A heat pump draws electric power ``p`` [kW] (0 <= p <= ``power_kw``) and delivers ``cop x p`` of
heat into a store (a hot-water tank or the building's thermal mass) of ``capacity_kwh_th``, from
which the heat demand ``q`` [kW_th] is taken. The stored heat ``e`` [kWh_th] follows

    e_t = (1 - loss_per_h x dt) e_{t-1} + (cop_t p_t - q_t) dt

and must stay within the comfort band [``e_min``, ``e_max``] = [``soc_min``, ``soc_max``] x
capacity in every interval (for a building mass, the band of indoor temperatures times its heat
capacity).

- COP: constant, or a share of the Carnot COP at the outdoor temperature,
  ``cop = efficiency x T_supply / (T_supply - T_outdoor)`` (temperatures in kelvin; a
  second-law efficiency of 0.4-0.5 matches measured air-source heat pumps, Staffell et al.,
  "A review of domestic heat pumps", Energy Environ. Sci. 5, 2012).
- Heat demand: the shape of a SimBench heat-pump profile (``Air_Parallel_1``, ``Soil_...``: the
  load of real heat pumps, 15-minute values of a year) scaled to ``annual_heat_kwh``.
- Business-as-usual: a thermostat with hysteresis: it switches on (full power) when the store
  would fall below ``e_min + deadband x (e_max - e_min)`` and off when it is full.
- Community LP: ``p`` and ``e`` as variables of the owner's balance; the store ends the day with
  at least what the thermostat would leave.
- Flexibility: up (draw less now; the heat is made up later, at the first intervals with spare
  power: rebound) and down (draw more now, less later), sized so that the comfort band holds in
  every interval.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from lemgrid.assets.kinds import KindOffers, KindPlan, LPBlock, LPContext, register_asset_kind
from lemgrid.assets.tables import _empty
from lemgrid.errors import InfeasibleError
from lemgrid.scenario.config import AssetBase, Energy, Fraction, PositiveFloat, Power, Strict

Temperature = Annotated[float, Field(ge=-60, le=100, allow_inf_nan=False)]
ZERO_C_K = 273.15


class CarnotCopConfig(Strict):
    """COP as a share of the Carnot COP at the outdoor temperature.

    ``outdoor_c`` is a constant or 24 hourly values of a typical day (repeated every day, local
    clock time)."""

    outdoor_c: Temperature | Annotated[list[Temperature], Field(min_length=24, max_length=24)]
    supply_c: Temperature = 35.0
    efficiency: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.45
    cop_max: Annotated[float, Field(ge=1, le=20, allow_inf_nan=False)] = 7.0

    @model_validator(mode="after")
    def _supply_above_outdoor(self):
        outdoor = np.atleast_1d(self.outdoor_c)
        if (outdoor >= self.supply_c).any():
            raise ValueError(f"outdoor_c must stay below supply_c ({self.supply_c} C), got "
                             f"{float(outdoor.max())} C")
        return self


class HeatPumpConfig(AssetBase):
    """A heat pump with a thermal store and a comfort band (see :mod:`lemgrid.assets.heat_pump`)."""

    type: Literal["heat_pump"]
    power_kw: Power = Field(description="most electric power drawn [kW]")
    cop: Annotated[float, Field(ge=1, le=20, allow_inf_nan=False)] | CarnotCopConfig = 3.0
    capacity_kwh_th: Energy = Field(description="heat the store holds between 0 and 100 % [kWh_th]")
    soc_min: Fraction = 0.2
    soc_max: Fraction = 1.0
    soc_initial: Fraction = 0.6
    loss_per_h: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0
    deadband: Fraction = Field(default=0.2, description="thermostat: switch on below this share "
                                                        "of the band")
    annual_heat_kwh: Annotated[float, Field(gt=0, le=1e8, allow_inf_nan=False)]
    profile: str = "Air_Parallel_1"

    @model_validator(mode="after")
    def _band(self):
        if not self.soc_min < self.soc_max:
            raise ValueError(f"soc_min ({self.soc_min}) must be < soc_max ({self.soc_max})")
        if not self.soc_min <= self.soc_initial <= self.soc_max:
            raise ValueError(f"soc_initial ({self.soc_initial}) must lie within [soc_min, "
                             "soc_max] (the comfort band)")
        return self


def carnot_cop(outdoor_c: np.ndarray, supply_c: float, efficiency: float, cop_max: float
               ) -> np.ndarray:
    """COP = efficiency x T_supply / (T_supply - T_outdoor) [-], capped at ``cop_max``.

    Parameters
    ----------
    outdoor_c : ndarray
        Outdoor (source) temperature [C].
    supply_c : float
        Supply (sink) temperature [C].
    efficiency : float
        Share of the Carnot COP reached [-].
    cop_max : float
    """
    lift_k = supply_c - np.asarray(outdoor_c, float)
    return np.minimum(efficiency * (supply_c + ZERO_C_K) / lift_k, cop_max)


@dataclass(frozen=True, eq=False)
class HeatPumps:
    """Heat pumps of a scenario or session (one row per heat pump).

    Attributes
    ----------
    owner : ndarray of int
    name : ndarray of str
    power_kw : ndarray
        Electric power limit [kW].
    e_min_kwh_th, e_max_kwh_th : ndarray
        Comfort band of the store [kWh_th].
    e_initial_kwh_th : ndarray
        Heat stored at the start [kWh_th].
    loss_per_h : ndarray
        Standing loss [share of the stored heat per hour].
    deadband : ndarray
        Thermostat: switches on below ``e_min + deadband x (e_max - e_min)``.
    on_initial : ndarray of bool
        Thermostat heating at the start (carried over from the previous session).
    heat_kw : ndarray, shape (A, T)
        Heat demand [kW_th].
    cop : ndarray, shape (A, T)
        Coefficient of performance [-].
    """

    owner: np.ndarray
    name: np.ndarray
    power_kw: np.ndarray
    e_min_kwh_th: np.ndarray
    e_max_kwh_th: np.ndarray
    e_initial_kwh_th: np.ndarray
    loss_per_h: np.ndarray
    deadband: np.ndarray
    on_initial: np.ndarray
    heat_kw: np.ndarray
    cop: np.ndarray

    def __len__(self) -> int:
        return len(self.name)


def _retention(table: HeatPumps, dt_h: float) -> np.ndarray:
    return 1.0 - table.loss_per_h * dt_h


def thermostat(table: HeatPumps, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Business-as-usual: a thermostat with hysteresis (see the module docstring).

    Returns
    -------
    p_kw : ndarray, shape (T, A)
        Electric power drawn [kW].
    e_kwh_th : ndarray, shape (T, A)
        Heat stored at the end of each interval [kWh_th].

    Raises
    ------
    InfeasibleError
        If the heat demand of an interval cannot be met even at full power from the store.
    """
    n_a, n_t = table.heat_kw.shape
    p, e_out = np.zeros((n_t, n_a)), np.zeros((n_t, n_a))
    keep = _retention(table, dt_h)
    e_low = table.e_min_kwh_th + table.deadband * (table.e_max_kwh_th - table.e_min_kwh_th)
    e = table.e_initial_kwh_th.astype(float).copy()
    on = table.on_initial.astype(bool) | (e < e_low)
    for t in range(n_t):
        cop = table.cop[:, t]
        drift = keep * e - table.heat_kw[:, t] * dt_h  # the store without heating
        on |= drift < e_low
        full = np.maximum((table.e_max_kwh_th - drift) / (cop * dt_h), 0.0)
        need = np.maximum((table.e_min_kwh_th - drift) / (cop * dt_h), 0.0)
        power = np.minimum(np.where(on, np.maximum(full, need), need), table.power_kw)
        e = drift + cop * power * dt_h
        short = e < table.e_min_kwh_th - 1e-9
        if short.any():
            k = int(np.flatnonzero(short)[0])
            raise InfeasibleError(
                f"heat pump {str(table.name[k])!r}: interval {t}: the heat demand "
                f"{table.heat_kw[k, t]:.3g} kW_th cannot be met at {table.power_kw[k]} kW "
                f"(COP {cop[k]:.3g}) without leaving the comfort band")
        on &= e < table.e_max_kwh_th - 1e-9
        p[t], e_out[t] = power, e
    return p, e_out


def check_heat_reachable(table: HeatPumps, dt_h: float) -> None:
    """Refuse heat demand that no schedule can meet: even heating at full power whenever the store
    has room (the fullest store possible), it would leave the comfort band.

    Raises
    ------
    InfeasibleError
        Naming the heat pump and the first interval.
    """
    keep = _retention(table, dt_h)
    e = table.e_initial_kwh_th.astype(float).copy()
    for t in range(table.heat_kw.shape[1]):
        e = np.minimum(keep * e + (table.cop[:, t] * table.power_kw - table.heat_kw[:, t]) * dt_h,
                       table.e_max_kwh_th)
        short = e < table.e_min_kwh_th - 1e-9
        if short.any():
            k = int(np.flatnonzero(short)[0])
            raise InfeasibleError(
                f"heat pump {str(table.name[k])!r}: interval {t}: the heat demand cannot be met "
                f"at {table.power_kw[k]} kW within the comfort band, whatever the schedule")


class HeatPumpKind:
    """The heat-pump asset kind (registered as ``heat_pump``)."""

    name: ClassVar[str] = "heat_pump"
    Config: ClassVar[type[BaseModel]] = HeatPumpConfig
    flex_price_eur_per_kwh: ClassVar[float] = 0.04

    # -- scenario ------------------------------------------------------------------------------
    def build(self, config: HeatPumpConfig, owner: int, name: str, horizon, loc: tuple) -> dict:
        from lemgrid.assets.profile_library import standard_profile

        shape = horizon.standard(config.profile, loc + ("profile",))
        year_kwh = standard_profile(config.profile).sum() * 0.25  # 15-minute values
        heat_kw = config.annual_heat_kwh * shape / year_kwh
        if not isinstance(config.cop, CarnotCopConfig):
            cop = np.full(len(heat_kw), float(config.cop))
        else:
            c = config.cop
            hours = horizon.time_index.hour + horizon.time_index.minute / 60
            outdoor = (np.full(len(hours), c.outdoor_c) if np.isscalar(c.outdoor_c)
                       else np.asarray(c.outdoor_c)[np.floor(hours).astype(int)])
            cop = carnot_cop(outdoor, c.supply_c, c.efficiency, c.cop_max)
        cap = config.capacity_kwh_th
        return dict(owner=owner, name=name, power_kw=config.power_kw,
                    e_min_kwh_th=config.soc_min * cap, e_max_kwh_th=config.soc_max * cap,
                    e_initial_kwh_th=config.soc_initial * cap, loss_per_h=config.loss_per_h,
                    deadband=config.deadband, on_initial=False, heat_kw=heat_kw, cop=cop)

    def table(self, rows: list[dict]) -> HeatPumps:
        if not rows:
            empty = _empty(HeatPumps)
            return replace(empty, heat_kw=np.zeros((0, 0)), cop=np.zeros((0, 0)))
        return HeatPumps(**{k: np.array([r[k] for r in rows]) for k in rows[0]})

    def window(self, table: HeatPumps, start: int, stop: int) -> HeatPumps:
        return replace(table, heat_kw=table.heat_kw[:, start:stop], cop=table.cop[:, start:stop])

    def carry(self, table: HeatPumps, plan: KindPlan) -> HeatPumps:
        if not len(plan.state):
            return table
        # Heating at the end and not full yet: the thermostat is still on.
        on = (-plan.output_kw[-1] > 1e-9) & (plan.state[-1] < table.e_max_kwh_th - 1e-9)
        return replace(table, e_initial_kwh_th=plan.state[-1].copy(), on_initial=on)

    # -- dispatch ------------------------------------------------------------------------------
    def rule_dispatch(self, table: HeatPumps, net_kw: np.ndarray, dt_h: float) -> KindPlan:
        p, e = thermostat(table, dt_h)
        return KindPlan(owner=table.owner, output_kw=-p, state=e)

    def lp_block(self, lp, table: HeatPumps, dt_h: float, final_state: np.ndarray | None,
                 context: LPContext) -> LPBlock:
        check_heat_reachable(table, dt_h)
        n_a, n_t = table.heat_kw.shape
        p = lp.var((n_t, n_a), ub=np.broadcast_to(table.power_kw, (n_t, n_a)))
        e_lb = np.broadcast_to(table.e_min_kwh_th, (n_t, n_a)).copy()
        if final_state is not None and n_t:
            e_lb[-1] = np.maximum(e_lb[-1], np.minimum(final_state, table.e_max_kwh_th))
        e = lp.var((n_t, n_a), lb=e_lb, ub=np.broadcast_to(table.e_max_kwh_th, (n_t, n_a)))
        keep = _retention(table, dt_h)
        # e_t - keep e_{t-1} - cop_t p_t dt = -q_t dt (+ keep e_0 in the first interval)
        rhs = -table.heat_kw.T * dt_h
        if n_t:
            rhs[0] += keep * table.e_initial_kwh_th
        rows = lp.rows((n_t, n_a), lower=rhs, upper=rhs)
        lp.coef(rows, e, 1.0)
        lp.coef(rows[1:], e[:-1], -keep[None, :])
        lp.coef(rows, p, -table.cop.T * dt_h)

        def read(solution) -> KindPlan:
            return KindPlan(owner=table.owner, output_kw=-solution[p], state=solution[e])

        return LPBlock(draw=[(p, 1.0)], read=read)

    # -- flexibility ---------------------------------------------------------------------------
    def offers(self, table: HeatPumps, plan: KindPlan, intervals: np.ndarray, dt_h: float
               ) -> KindOffers:
        n_a = len(table)
        intervals = np.asarray(intervals, int)
        if not n_a or not len(intervals):
            return KindOffers.empty()
        p, e = -plan.output_kw, plan.state
        heat_per_kw = table.cop.T * dt_h  # (T, A) heat moved per kW in the interval [kWh_th]
        later_min = np.minimum.accumulate(e[::-1], axis=0)[::-1]
        later_max = np.maximum.accumulate(e[::-1], axis=0)[::-1]
        spare_heat = (table.power_kw - p) * heat_per_kw
        drawn_heat = p * heat_per_kw
        # Heat that later intervals can make up (up) or leave out (down), strictly after t.
        spare_after = np.cumsum(spare_heat[::-1], axis=0)[::-1] - spare_heat
        drawn_after = np.cumsum(drawn_heat[::-1], axis=0)[::-1] - drawn_heat
        up = np.minimum.reduce([p, (later_min - table.e_min_kwh_th) / heat_per_kw,
                                spare_after / heat_per_kw])
        down = np.minimum.reduce([table.power_kw - p, (table.e_max_kwh_th - later_max) / heat_per_kw,
                                  drawn_after / heat_per_kw])
        tt, aa = np.meshgrid(intervals, np.arange(n_a), indexing="ij")
        tt, aa = tt.ravel(), aa.ravel()
        parts = []
        for direction, kw in ((1, up), (-1, down)):
            room = np.maximum(kw[tt, aa], 0.0)
            keep = room > 1e-6
            parts.append((aa[keep], tt[keep], np.full(keep.sum(), direction), room[keep],
                          p[tt[keep], aa[keep]]))
        return KindOffers(*(np.concatenate([part[i] for part in parts]) for i in range(5)))

    def budgets(self, table: HeatPumps, plan: KindPlan, offers: KindOffers, dt_h: float
                ) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Per heat pump: the heat deferred (up) up to any interval is at most what the store
        holds above its band then, and the heat deferred from any interval on is at most what
        the later intervals can make up; the same for heat drawn early (down) against the top
        of the band and the heat later intervals still draw. (Deferred heat counted without the
        standing loss, which only shrinks it: conservative.)"""
        rows = []
        p, e = -plan.output_kw, plan.state
        n_t = e.shape[0]
        for k in range(len(table)):
            heat_per_kw = table.cop[k] * dt_h
            spare = (table.power_kw[k] - p[:, k]) * heat_per_kw
            drawn = p[:, k] * heat_per_kw
            for direction, room, later in ((1, e[:, k] - table.e_min_kwh_th[k], spare),
                                           (-1, table.e_max_kwh_th[k] - e[:, k], drawn)):
                mine = np.flatnonzero((offers.asset == k) & (offers.direction == direction))
                if not len(mine):
                    continue
                t_of = offers.interval[mine]
                coef = heat_per_kw[t_of]
                for t in range(n_t):
                    before = t_of <= t
                    if before.any():
                        rows.append((mine[before], coef[before], max(float(room[t]), 0.0)))
                for s in np.unique(t_of):
                    after = t_of >= s
                    rows.append((mine[after], coef[after], float(later[s + 1:].sum())))
        return rows

    def apply(self, table: HeatPumps, plan: KindPlan, asset: np.ndarray, interval: np.ndarray,
              delta_kw: np.ndarray, dt_h: float) -> KindPlan:
        """Carry out activations, earliest first: draw ``delta_kw`` less (up) or more (down) at
        the interval, then bring the store back to its planned level at the first later
        intervals that can (rebound)."""
        plan = plan.copy()
        p = -plan.output_kw
        e = plan.state
        keep = _retention(table, dt_h)
        for j in np.argsort(interval, kind="stable"):
            k, t = int(asset[j]), int(interval[j])
            cop = table.cop[k]
            p_max = table.power_kw[k]
            p[t, k] = np.clip(p[t, k] - delta_kw[j], 0.0, p_max)
            planned = e[:, k].copy()
            e_prev = planned[t - 1] if t else table.e_initial_kwh_th[k]  # unchanged before t
            for tau in range(t, len(planned)):
                drift = keep[k] * e_prev - table.heat_kw[k, tau] * dt_h
                off_plan = drift + cop[tau] * p[tau, k] * dt_h - planned[tau]
                if tau > t and abs(off_plan) > 1e-12:
                    # Rebound: the power that brings the store back to its planned level.
                    target = (planned[tau] - drift) / (cop[tau] * dt_h)
                    p[tau, k] = np.clip(target, 0.0, p_max)
                e_prev = drift + cop[tau] * p[tau, k] * dt_h
                e[tau, k] = e_prev
        plan.output_kw = -p
        plan.state = e
        return plan


HEAT_PUMP = register_asset_kind(HeatPumpKind())
