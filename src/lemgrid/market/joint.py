"""Energy and flexibility from the same batteries: one day-ahead clearing against today's
sequential markets.

A community schedules its members' batteries for energy (its position with the retailer: import
at ``buy``, export at ``sell``); the DSO needs up and down capacity per interval (``need_up_kw``,
``need_down_kw``) and buys what the community cannot hold at an alternative price
(``alternative_eur_per_kw_h``: another provider, or the cost of not having it). The system cost
is the community's energy cost plus what the DSO pays the alternative (the availability the DSO
pays the community is a transfer inside the system).

- **Sequential** (today's markets): the energy schedule first (the cost-minimal one, as the
  community market clears without the DSO); then the DSO reserves what the fixed schedule leaves,
  each battery's room as the lab sizes its flexibility offers
  (:func:`lemgrid.assets.battery.schedule_room`: stop charging, then discharge more; stop
  discharging, then charge more; every later state of charge within limits), and buys the rest
  from the alternative.
- **Joint**: one LP chooses the energy schedule and the reserved capacity together. A battery's
  up capacity at ``t`` is ``r_sc + r_dm`` (``r_sc <= c_t`` stopping its charge, ``r_dm <= P -
  d_t`` discharging more) with ``r_sc eta_c dt + r_dm dt / eta_d <= e_t' - e_min`` for every
  ``t' >= t`` (the room's own rule, written with a running minimum ``m_t <= e_t``, ``m_t <=
  m_t+1``); down capacity alike. Each interval's capacity is sized for an activation of that
  interval alone, as the lab's offers are.

The sequential schedule is feasible for the joint problem, so the joint clearing never costs
more; it costs less where the energy schedule leaves the batteries empty or full when the DSO
needs them (the review's call for co-optimised energy and flexibility).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lemgrid.assets.tables import Batteries
from lemgrid.errors import InfeasibleError, InputError


@dataclass(frozen=True)
class FlexDay:
    """One day of a community with batteries and the DSO's need for capacity.

    Attributes
    ----------
    net_load_kw : ndarray, shape (T,)
        The community's load less its PV [kW] (what it imports without its batteries).
    batteries : Batteries
    dt_h : float
    buy_eur_per_kwh, sell_eur_per_kwh : float
        Retail price and feed-in tariff (``buy >= sell``).
    need_up_kw, need_down_kw : ndarray, shape (T,)
        The DSO's need for up (more injection) and down capacity [kW], >= 0.
    alternative_eur_per_kw_h : float
        What the DSO pays per kW and hour of need the community does not hold.
    wear_eur_per_kwh : float
    """

    net_load_kw: np.ndarray
    batteries: Batteries
    dt_h: float
    buy_eur_per_kwh: float
    sell_eur_per_kwh: float
    need_up_kw: np.ndarray
    need_down_kw: np.ndarray
    alternative_eur_per_kw_h: float
    wear_eur_per_kwh: float = 0.001

    def __post_init__(self) -> None:
        n_t = len(self.net_load_kw)
        for name in ("net_load_kw", "need_up_kw", "need_down_kw"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != (n_t,) or not np.isfinite(value).all():
                raise InputError(f"{name}: must be a finite array of one value per interval")
        if (np.asarray(self.need_up_kw) < 0).any() or (np.asarray(self.need_down_kw) < 0).any():
            raise InputError("need_up_kw, need_down_kw: a need may not be negative")
        if not self.buy_eur_per_kwh >= self.sell_eur_per_kwh:
            raise InputError("sell_eur_per_kwh: the feed-in tariff exceeds the retail price")
        if not self.alternative_eur_per_kw_h >= 0:
            raise InputError("alternative_eur_per_kw_h: must be >= 0")


@dataclass(frozen=True)
class FlexClearing:
    """A clearing of energy and capacity.

    Attributes
    ----------
    battery_kw : ndarray, shape (T, B)
        Battery output (discharge positive) [kW].
    energy_kwh : ndarray, shape (T, B)
        Stored energy at the end of each interval [kWh].
    up_kw, down_kw : ndarray, shape (T,)
        Capacity the community's batteries hold for the DSO [kW] (at most the need).
    energy_cost_eur, alternative_cost_eur : float
        The community's cost with the retailer (and battery wear) and what the DSO pays the
        alternative [EUR].
    """

    battery_kw: np.ndarray
    energy_kwh: np.ndarray
    up_kw: np.ndarray
    down_kw: np.ndarray
    energy_cost_eur: float
    alternative_cost_eur: float

    @property
    def system_cost_eur(self) -> float:
        return self.energy_cost_eur + self.alternative_cost_eur


def clear_joint(day: FlexDay, fixed_battery_kw: np.ndarray | None = None) -> FlexClearing:
    """Energy and capacity in one LP (see module doc); with ``fixed_battery_kw`` (T, B), the
    capacity the DSO can reserve from that fixed energy schedule (its charge ``max(-x, 0)`` and
    discharge ``max(x, 0)``).

    Raises
    ------
    InfeasibleError
        If HiGHS does not solve it to optimality (e.g. a fixed schedule outside the limits).
    """
    from lemgrid.assets.battery import add_energy_balance
    from lemgrid.market.lp import LinearProgram

    b = day.batteries
    n_t, n_b, dt = len(day.net_load_kw), len(b), day.dt_h
    lp = LinearProgram()
    power = np.broadcast_to(b.power_kw, (n_t, n_b))
    if fixed_battery_kw is None:
        ch_lb, ch_ub, dis_lb, dis_ub = 0.0, power, 0.0, power
    else:
        fixed = np.asarray(fixed_battery_kw, dtype=float)
        ch_lb = ch_ub = np.maximum(-fixed, 0)
        dis_lb = dis_ub = np.maximum(fixed, 0)
    ch = lp.var((n_t, n_b), lb=ch_lb, ub=ch_ub, cost=dt * day.wear_eur_per_kwh)
    dis = lp.var((n_t, n_b), lb=dis_lb, ub=dis_ub, cost=dt * day.wear_eur_per_kwh)
    e_min, e_max = b.soc_min * b.capacity_kwh, b.soc_max * b.capacity_kwh
    e_lb = np.broadcast_to(e_min, (n_t, n_b)).copy()
    if n_t:
        e_lb[-1] = np.maximum(e_lb[-1], np.maximum(b.soc_final, b.soc_min) * b.capacity_kwh)
    energy = lp.var((n_t, n_b), lb=e_lb, ub=np.broadcast_to(e_max, (n_t, n_b)))
    g_plus = lp.var(n_t, cost=dt * day.buy_eur_per_kwh)
    g_minus = lp.var(n_t, cost=-dt * day.sell_eur_per_kwh)
    # reserve parts: stop charging / discharge more (up), stop discharging / charge more (down)
    r_sc, r_dm, r_sd, r_cm = (lp.var((n_t, n_b)) for _ in range(4))
    short_up = lp.var(n_t, cost=dt * day.alternative_eur_per_kw_h)
    short_down = lp.var(n_t, cost=dt * day.alternative_eur_per_kw_h)
    lo = lp.var((n_t, n_b), lb=-np.inf, ub=np.inf)  # running minimum of later energy
    hi = lp.var((n_t, n_b), lb=-np.inf, ub=np.inf)  # running maximum

    # the community's balance: g+ - g- = net load + charge - discharge
    rows = lp.rows(n_t, lower=day.net_load_kw, upper=day.net_load_kw)
    lp.coef(rows, g_plus, 1.0)
    lp.coef(rows, g_minus, -1.0)
    lp.coef(rows[:, None], ch, -1.0)
    lp.coef(rows[:, None], dis, 1.0)
    add_energy_balance(lp, energy, ch, dis, b, dt)
    # power room: r_sc <= c, r_dm + d <= P, r_sd <= d, r_cm + c <= P
    for part, own, other in ((r_sc, ch, None), (r_dm, dis, power), (r_sd, dis, None),
                             (r_cm, ch, power)):
        rows = lp.rows((n_t, n_b), upper=0.0 if other is None else other)
        lp.coef(rows, part, 1.0)
        lp.coef(rows, own, -1.0 if other is None else 1.0)
    # running min / max of the later stored energy
    for bound, sign in ((lo, 1.0), (hi, -1.0)):
        rows = lp.rows((n_t, n_b), upper=0.0)  # sign (bound_t - e_t) <= 0
        lp.coef(rows, bound, sign)
        lp.coef(rows, energy, -sign)
        if n_t > 1:
            rows = lp.rows((n_t - 1, n_b), upper=0.0)  # sign (bound_t - bound_t+1) <= 0
            lp.coef(rows, bound[:-1], sign)
            lp.coef(rows, bound[1:], -sign)
    # energy room: the activation keeps every later state within limits
    rows = lp.rows((n_t, n_b), upper=np.broadcast_to(-e_min, (n_t, n_b)))
    lp.coef(rows, r_sc, b.eta_charge * dt)
    lp.coef(rows, r_dm, dt / b.eta_discharge)
    lp.coef(rows, lo, -1.0)
    rows = lp.rows((n_t, n_b), upper=np.broadcast_to(e_max, (n_t, n_b)))
    lp.coef(rows, r_sd, dt / b.eta_discharge)
    lp.coef(rows, r_cm, b.eta_charge * dt)
    lp.coef(rows, hi, 1.0)
    # the DSO's need: what the batteries hold, and the rest from the alternative
    for parts, short, need in (((r_sc, r_dm), short_up, day.need_up_kw),
                               ((r_sd, r_cm), short_down, day.need_down_kw)):
        rows = lp.rows(n_t, lower=need)
        for part in parts:
            lp.coef(rows[:, None], part, 1.0)
        lp.coef(rows, short, 1.0)
    solution = lp.solve()
    if solution.status != "Optimal":
        raise InfeasibleError(f"joint clearing: HiGHS ended with {solution.status}")
    x = solution.x
    up = np.minimum(x[r_sc].sum(1) + x[r_dm].sum(1), day.need_up_kw)
    down = np.minimum(x[r_sd].sum(1) + x[r_cm].sum(1), day.need_down_kw)
    energy_cost = float(dt * (day.buy_eur_per_kwh * x[g_plus] - day.sell_eur_per_kwh
                              * x[g_minus]).sum() + dt * day.wear_eur_per_kwh
                        * (x[ch] + x[dis]).sum())
    alternative = float(dt * day.alternative_eur_per_kw_h
                        * (day.need_up_kw - up + day.need_down_kw - down).sum())
    return FlexClearing(x[dis] - x[ch], x[energy], up, down, energy_cost, alternative)


def clear_sequential(day: FlexDay) -> FlexClearing:
    """Today's markets: the cost-minimal energy schedule without the DSO, then the DSO
    reserves each battery's room in it as the lab sizes its offers
    (:func:`lemgrid.assets.battery.schedule_room`) and buys the rest from the alternative."""
    from dataclasses import replace

    from lemgrid.assets.battery import schedule_room

    energy_only = clear_joint(replace(day, need_up_kw=np.zeros_like(day.need_up_kw),
                                      need_down_kw=np.zeros_like(day.need_down_kw)))
    soc = energy_only.energy_kwh
    up_b, down_b = schedule_room(energy_only.battery_kw, soc, day.batteries, day.dt_h)
    up = np.minimum(up_b.sum(axis=1), day.need_up_kw)
    down = np.minimum(down_b.sum(axis=1), day.need_down_kw)
    alternative = float(day.dt_h * day.alternative_eur_per_kw_h
                        * (day.need_up_kw - up + day.need_down_kw - down).sum())
    return FlexClearing(energy_only.battery_kw, soc, up, down, energy_only.energy_cost_eur,
                        alternative)
