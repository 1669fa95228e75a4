"""Batteries: an asset kind (see :mod:`lemgrid.assets.kinds`).

A battery charges ``c`` and discharges ``d`` [kW] (each at most ``power_kw``) with one-way
efficiencies (round trip = charge x discharge); the stored energy ``e`` [kWh] follows

    e_t = e_{t-1} + (eta_c c_t - d_t / eta_d) dt,   soc_min cap <= e_t <= soc_max cap.

- Business-as-usual: greedy self-consumption: charge from the owner's surplus, discharge into its
  deficit, after every other kind has run (``rule_order``); batteries of one owner take turns.
- Community LP: ``c``, ``d`` and ``e`` per interval; lost energy valued at the curtailment value
  and a wear cost per kWh moved, so that charging and discharging at once is never cheaper than
  curtailing; where the LP still does both at once (``conflicts``) the clearing is solved again
  with a binary mode there. The battery ends with exactly the energy asked (``final_state``,
  business-as-usual's) or at least ``soc_final`` x capacity.
- Flexibility: up (charge less / discharge more) and down, sized so that every later state of
  charge of the session stays within its limits; activations move every later state of charge.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from lemgrid.assets.kinds import KindOffers, KindPlan, LPBlock, LPContext, _register_builtin
from lemgrid.assets.tables import Batteries
from lemgrid.errors import InfeasibleError
from lemgrid.scenario.config import BatteryConfig

#: Threshold above which a battery is seen as charging and discharging at once [kW].
SIMULTANEOUS_KW = 1e-6


def self_consumption_battery(net_kw: np.ndarray, batteries: Batteries, dt_h: float
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy self-consumption: charge from the owner's surplus, discharge into its deficit.

    Parameters
    ----------
    net_kw : ndarray, shape (T, N)
        Owner's net position before the battery (PV minus load minus other consumption) [kW].
    batteries : Batteries
    dt_h : float
        Interval length [h].

    Returns
    -------
    battery_kw : ndarray, shape (T, B)
        Net output of each battery (discharge positive) [kW].
    soc_kwh : ndarray, shape (T, B)
        State of charge at the end of each interval [kWh].
    """
    n_t, n = net_kw.shape
    out = np.zeros((n_t, len(batteries)))
    soc = np.zeros((n_t, len(batteries)))
    if not len(batteries):
        return out, soc
    b = batteries
    e_min, e_max = b.soc_min * b.capacity_kwh, b.soc_max * b.capacity_kwh
    # Batteries of the same owner take turns: the first sees the owner's net, the next the rest.
    rank = np.zeros(len(b), dtype=int)
    for owner in np.unique(b.owner):
        same = np.flatnonzero(b.owner == owner)
        rank[same] = np.arange(len(same))
    level = b.soc_initial * b.capacity_kwh
    residual = net_kw.copy()
    for t in range(n_t):
        for r in range(rank.max() + 1):
            k = np.flatnonzero(rank == r)
            owner = b.owner[k]
            need = residual[t, owner]
            charge = np.minimum.reduce([np.maximum(need, 0), b.power_kw[k],
                                        (e_max[k] - level[k]) / (b.eta_charge[k] * dt_h)])
            discharge = np.minimum.reduce([np.maximum(-need, 0), b.power_kw[k],
                                           (level[k] - e_min[k]) * b.eta_discharge[k] / dt_h])
            charge, discharge = np.maximum(charge, 0), np.maximum(discharge, 0)
            level[k] += (b.eta_charge[k] * charge - discharge / b.eta_discharge[k]) * dt_h
            residual[t, owner] += discharge - charge
            out[t, k] = discharge - charge
        soc[t] = level
    return out, soc


def soc_change_kwh(output_kw: np.ndarray, eta_c: np.ndarray, eta_d: np.ndarray, dt_h: float
                   ) -> np.ndarray:
    """Change of stored energy [kWh] caused by a battery output (discharge positive) [kW]."""
    return np.where(output_kw > 0, -output_kw * dt_h / eta_d, -output_kw * eta_c * dt_h)


def battery_room(output_kw, soc_after_min_kwh, soc_after_max_kwh, batteries, dt_h: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Most a battery can move up / down at an interval [kW] (arrays (T, B)).

    ``soc_after_min_kwh``/``max``: the lowest / highest state of charge from that interval to the
    end of the session; the change must keep all of them within the battery's limits.
    """
    b = batteries
    e_min, e_max = b.soc_min * b.capacity_kwh, b.soc_max * b.capacity_kwh
    budget_up = np.maximum(soc_after_min_kwh - e_min, 0.0)  # energy we may take out
    budget_down = np.maximum(e_max - soc_after_max_kwh, 0.0)  # energy we may put in
    # Up: first stop charging (saves eta_c per kWh), then discharge (costs 1/eta_d per kWh).
    charging = np.maximum(-output_kw, 0.0)
    stop_charge = np.minimum(charging, budget_up / (b.eta_charge * dt_h))
    rest = budget_up - stop_charge * b.eta_charge * dt_h
    discharge_more = np.where(stop_charge >= charging - 1e-12,
                              np.minimum(b.power_kw - np.maximum(output_kw, 0.0),
                                         rest * b.eta_discharge / dt_h), 0.0)
    up = stop_charge + np.maximum(discharge_more, 0.0)
    # Down: first stop discharging (keeps 1/eta_d per kWh), then charge (eta_c per kWh).
    discharging = np.maximum(output_kw, 0.0)
    stop_discharge = np.minimum(discharging, budget_down * b.eta_discharge / dt_h)
    rest = budget_down - stop_discharge * dt_h / b.eta_discharge
    charge_more = np.where(stop_discharge >= discharging - 1e-12,
                           np.minimum(b.power_kw - charging, rest / (b.eta_charge * dt_h)), 0.0)
    down = stop_discharge + np.maximum(charge_more, 0.0)
    return up, down


def schedule_room(output_kw: np.ndarray, energy_kwh: np.ndarray, batteries: Batteries,
                  dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Most each battery of a schedule can move up / down at each interval [kW] (T, B)
    (:func:`battery_room`), from its output [kW] and its stored energy at the end of each
    interval [kWh] (T, B): every later state of charge stays within the limits."""
    later_min = np.minimum.accumulate(energy_kwh[::-1], axis=0)[::-1]
    later_max = np.maximum.accumulate(energy_kwh[::-1], axis=0)[::-1]
    return battery_room(output_kw, later_min, later_max, batteries, dt_h)


def add_energy_balance(lp, energy: np.ndarray, charge: np.ndarray, discharge: np.ndarray,
                       batteries: Batteries, dt_h: float) -> None:
    """The rows ``e_t = e_t-1 + eta_c c_t dt - d_t dt / eta_d`` (``e_-1``: the initial energy)
    of a :class:`~lemgrid.market.lp.LinearProgram`, for variable blocks of shape (..., T, B)
    (a leading axis: e.g. scenarios)."""
    b = batteries
    start = np.zeros(energy.shape)
    if energy.shape[-2]:
        start[..., 0, :] = b.soc_initial * b.capacity_kwh
    rows = lp.rows(energy.shape, lower=start, upper=start)
    lp.coef(rows, energy, 1.0)
    lp.coef(rows[..., 1:, :], energy[..., :-1, :], -1.0)
    lp.coef(rows, charge, -b.eta_charge * dt_h)
    lp.coef(rows, discharge, dt_h / b.eta_discharge)


def final_energy_kwh(batteries: Batteries, final_state: np.ndarray | None) -> np.ndarray:
    """Energy each battery must end with: ``final_state`` exactly, else at least
    ``max(soc_final, soc_min) x capacity`` [kWh]."""
    if final_state is not None:
        return np.asarray(final_state, float)
    return np.maximum(batteries.soc_final, batteries.soc_min) * batteries.capacity_kwh


class BatteryKind:
    """The battery asset kind (registered as ``battery``)."""

    name: ClassVar[str] = "battery"
    Config: ClassVar[type[BaseModel]] = BatteryConfig
    flex_price_eur_per_kwh: ClassVar[float] = 0.05
    #: Self-consumption answers what the owner's other assets leave: it runs last.
    rule_order: ClassVar[int] = 100
    series_names: ClassVar[tuple[str, ...]] = ("battery_kw", "battery_e_kwh")

    # -- scenario ------------------------------------------------------------------------------
    def build(self, config: BatteryConfig, owner: int, name: str, horizon, loc: tuple) -> dict:
        eta = float(np.sqrt(config.efficiency))
        return dict(owner=owner, name=name, capacity_kwh=config.capacity_kwh,
                    power_kw=config.power_kw, eta_charge=eta, eta_discharge=eta,
                    soc_min=config.soc_min, soc_max=config.soc_max, soc_initial=config.soc_initial,
                    soc_final=config.soc_initial if config.soc_final is None else config.soc_final)

    def table(self, rows: list[dict]) -> Batteries:
        if not rows:
            return Batteries.empty()
        return Batteries(**{k: np.array([r[k] for r in rows]) for k in rows[0]})

    def window(self, table: Batteries, start: int, stop: int) -> Batteries:
        return table

    def carry(self, table: Batteries, plan: KindPlan) -> Batteries:
        if not len(table) or not len(plan.state):
            return table
        soc = np.clip(plan.state[-1] / table.capacity_kwh, table.soc_min, table.soc_max)
        return replace(table, soc_initial=soc)

    def series(self, table: Batteries, plan: KindPlan) -> dict[str, np.ndarray]:
        return {"battery_kw": plan.output_kw, "battery_e_kwh": plan.state}

    # -- dispatch ------------------------------------------------------------------------------
    def rule_dispatch(self, table: Batteries, net_kw: np.ndarray, dt_h: float) -> KindPlan:
        output, soc = self_consumption_battery(net_kw, table, dt_h)
        return KindPlan(owner=table.owner, output_kw=output, state=soc)

    def check(self, table: Batteries, n_t: int, dt_h: float, final_state: np.ndarray | None,
              ids: np.ndarray) -> None:
        """Refuse a battery that cannot reach its final energy within ``n_t`` intervals."""
        b = table
        start, final = b.soc_initial * b.capacity_kwh, final_energy_kwh(b, final_state)
        up = start + b.eta_charge * b.power_kw * n_t * dt_h
        down = start - b.power_kw * n_t * dt_h / b.eta_discharge
        short = np.flatnonzero((up + 1e-9 < final) | (down - 1e-9 > final))
        if len(short):
            k = short[0]
            raise InfeasibleError(
                f"battery {str(b.name[k])!r} of {str(ids[b.owner[k]])!r} cannot reach its final "
                f"energy {final[k]:.3g} kWh from {start[k]:.3g} kWh within the horizon")

    def lp_block(self, lp, table: Batteries, dt_h: float, final_state: np.ndarray | None,
                 context: LPContext) -> LPBlock:
        b, dt = table, dt_h
        n_t = context.n_intervals
        self.check(b, n_t, dt, final_state, context.ids)
        n_b = len(b)
        ch_ub = np.broadcast_to(b.power_kw, (n_t, n_b)).copy()
        dis_ub = ch_ub.copy()
        forced_t, forced_b = context.forced[:, 0], context.forced[:, 1]
        fixed = context.fixed_modes
        if fixed is not None:
            # Modes fixed after the MILP: charging-only or discharging-only intervals.
            dis_ub[forced_t[fixed], forced_b[fixed]] = 0.0
            ch_ub[forced_t[~fixed], forced_b[~fixed]] = 0.0
        value, wear = context.curtailment_eur_per_kwh, context.wear_eur_per_kwh
        cost_ch = dt * (value * (1 - b.eta_charge) + wear)[None, :]
        cost_dis = dt * (value * (1 / b.eta_discharge - 1) + wear)[None, :]
        ch = lp.var((n_t, n_b), ub=ch_ub, cost=cost_ch)
        dis = lp.var((n_t, n_b), ub=dis_ub, cost=cost_dis)
        soc_ub = np.broadcast_to(b.soc_max * b.capacity_kwh, (n_t, n_b)).copy()
        soc_lb = np.broadcast_to(b.soc_min * b.capacity_kwh, (n_t, n_b)).copy()
        if n_t:
            soc_lb[-1] = np.maximum(soc_lb[-1], final_energy_kwh(b, final_state))
            if final_state is not None:
                soc_ub[-1] = soc_lb[-1]
        soc = lp.var((n_t, n_b), lb=soc_lb, ub=soc_ub)

        def constrain() -> None:
            add_energy_balance(lp, soc, ch, dis, b, dt)
            if len(forced_t) and fixed is None:
                # Binary charge/discharge modes where the LP wanted both at once (MILP).
                p_max = b.power_kw[forced_b]
                mode = lp.var(len(forced_t), lb=0, ub=1, integer=True)
                charge_rows = lp.rows(len(forced_t), upper=0.0)  # ch <= P * mode
                lp.coef(charge_rows, ch[forced_t, forced_b], 1.0)
                lp.coef(charge_rows, mode, -p_max)
                discharge_rows = lp.rows(len(forced_t), upper=p_max)  # dis <= P * (1 - mode)
                lp.coef(discharge_rows, dis[forced_t, forced_b], 1.0)
                lp.coef(discharge_rows, mode, p_max)
                block.modes = mode

        def read(solution) -> KindPlan:
            c, d = solution[ch], solution[dis]
            return KindPlan(owner=b.owner, output_kw=d - c, state=solution[soc],
                            detail={"charge_kw": c, "discharge_kw": d})

        def cost(solution) -> float:
            return float((solution[ch] * cost_ch).sum() + (solution[dis] * cost_dis).sum())

        def conflicts(solution) -> np.ndarray:
            return np.argwhere((solution[ch] > SIMULTANEOUS_KW)
                               & (solution[dis] > SIMULTANEOUS_KW))

        block = LPBlock(draw=[(ch, 1.0), (dis, -1.0)], read=read, constrain=constrain,
                        cost=cost, conflicts=conflicts)
        return block

    # -- flexibility ---------------------------------------------------------------------------
    def offers(self, table: Batteries, plan: KindPlan, intervals: np.ndarray, dt_h: float
               ) -> KindOffers:
        intervals = np.asarray(intervals, int)
        if not len(table) or not len(intervals):
            return KindOffers.empty()
        up, down = schedule_room(plan.output_kw, plan.state, table, dt_h)
        tt, bb = np.meshgrid(intervals, np.arange(len(table)), indexing="ij")
        tt, bb = tt.ravel(), bb.ravel()
        base = plan.output_kw[tt, bb]
        parts = []
        for direction, room in ((1, up[tt, bb]), (-1, down[tt, bb])):
            keep = room > 1e-6
            parts.append((bb[keep], tt[keep], np.full(keep.sum(), direction), room[keep],
                          base[keep]))
        return KindOffers(*(np.concatenate([part[i] for part in parts]) for i in range(5)))

    def budgets(self, table: Batteries, plan: KindPlan, offers: KindOffers, dt_h: float
                ) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Per battery and interval: the activations up to then may not push its stored energy
        above or below its limits (counted with the worse efficiency of each direction)."""
        rows = []
        b = table
        n_t = plan.state.shape[0]
        for k in range(len(b)):
            mine = np.flatnonzero(offers.asset == k)
            if not len(mine):
                continue
            up = offers.direction[mine] == 1
            # Energy change per kW: most for the upper limit, least for the lower one.
            rise = np.where(up, -b.eta_charge[k] * dt_h, dt_h / b.eta_discharge[k])
            fall = np.where(up, dt_h / b.eta_discharge[k], -b.eta_charge[k] * dt_h)
            e_max = b.soc_max[k] * b.capacity_kwh[k]
            e_min = b.soc_min[k] * b.capacity_kwh[k]
            for t in range(n_t):
                before = offers.interval[mine] <= t
                if not before.any():
                    continue
                for coef, bound in ((rise, e_max - plan.state[t, k]),
                                    (fall, plan.state[t, k] - e_min)):
                    rows.append((mine[before], coef[before], max(bound, 0.0)))
        return rows

    def apply(self, table: Batteries, plan: KindPlan, asset: np.ndarray, interval: np.ndarray,
              delta_kw: np.ndarray, dt_h: float) -> KindPlan:
        """The output changes at the interval; every later state of charge moves by the energy
        that change costs or saves."""
        plan = plan.copy()
        b, out, soc = table, plan.output_kw, plan.state
        for k, t, delta in zip(asset.tolist(), interval.tolist(), delta_kw, strict=True):
            old = out[t, k]
            new = old + delta
            change = (soc_change_kwh(np.array(new), b.eta_charge[k], b.eta_discharge[k], dt_h)
                      - soc_change_kwh(np.array(old), b.eta_charge[k], b.eta_discharge[k], dt_h))
            out[t, k] = new
            soc[t:, k] += change
        plan.detail = {}  # the LP's charge/discharge split no longer holds
        return plan


BATTERY = _register_builtin(BatteryKind())
