"""A community's day-ahead schedule under uncertainty: two-stage stochastic LP, risk-averse.

The community manager commits a day-ahead position with the retailer per interval (first
stage: ``g_t = g+_t - g-_t`` [kW], import positive, bought at the retail price and sold at the
feed-in tariff), before the members' load and PV are known. At delivery (second stage, for each
scenario ``s`` of the realised profiles) it runs the members' batteries and settles what is left
as imbalance: short at ``short`` and long at ``long`` EUR/kWh (``short >= buy >= sell >=
long``). Per scenario:

    A_s,t = sum_n (load - pv)_s,t,n + sum_b (c - d)_s,t,b          (community net import)
    A_s,t - g_t = short_s,t - long_s,t
    e_s,t,b = e_s,t-1,b + eta_c c dt - d dt / eta_d,   limits, start and end energy
    cost_s = sum_t dt (buy g+ - sell g- + short * short_s - long * long_s + wear (c + d))

The risk-neutral schedule minimises the expected cost; the risk-averse one the weighted sum
``(1 - beta) E[cost] + beta CVaR_alpha(cost)`` with CVaR in the linear form of Rockafellar &
Uryasev [1] (one auxiliary variable per scenario and the value at risk ``eta``). The
deterministic schedule is the same problem on one scenario, the forecast; its value is measured
by fixing its first stage and solving each scenario's recourse (the expected result of the
expected-value solution, EEV): the value of the stochastic solution ``VSS = EEV - RP`` (RP: the
stochastic program's optimum) is never negative on the scenarios the stochastic program saw
(Birge & Louveaux [2], ch. 4).

References
----------
.. [1] R. T. Rockafellar, S. Uryasev, "Optimization of conditional value-at-risk", J. Risk 2(3),
   21-41, 2000.
.. [2] J. R. Birge, F. Louveaux, "Introduction to Stochastic Programming", 2nd ed., Springer,
   2011.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lemgrid.assets.tables import Batteries
from lemgrid.errors import InfeasibleError, InputError


@dataclass(frozen=True)
class StochasticDay:
    """The scenarios of one day a community schedules for.

    Attributes
    ----------
    load_kw, pv_kw : ndarray, shape (S, T, N)
        Each scenario's realised load and PV of every member [kW].
    batteries : Batteries
        The members' batteries (their energy at the start of the day: ``soc_initial``).
    dt_h : float
    buy_eur_per_kwh, sell_eur_per_kwh, short_eur_per_kwh, long_eur_per_kwh : float
        Retail price, feed-in tariff, and the prices of a short and a long imbalance.
    wear_eur_per_kwh : float
        Battery wear per kWh charged or discharged.
    """

    load_kw: np.ndarray
    pv_kw: np.ndarray
    batteries: Batteries
    dt_h: float
    buy_eur_per_kwh: float
    sell_eur_per_kwh: float
    short_eur_per_kwh: float
    long_eur_per_kwh: float
    wear_eur_per_kwh: float = 0.001

    def __post_init__(self) -> None:
        if self.load_kw.shape != self.pv_kw.shape or self.load_kw.ndim != 3:
            raise InputError("load_kw, pv_kw: must both be (scenarios, intervals, members)")
        if not (np.isfinite(self.load_kw).all() and np.isfinite(self.pv_kw).all()):
            raise InputError("load_kw, pv_kw: must be finite")
        prices = (self.short_eur_per_kwh, self.buy_eur_per_kwh, self.sell_eur_per_kwh,
                  self.long_eur_per_kwh)
        if not all(np.isfinite(prices)) or not (prices[0] >= prices[1] >= prices[2]
                                                >= prices[3]):
            raise InputError("short_eur_per_kwh, buy_eur_per_kwh, sell_eur_per_kwh, "
                             f"long_eur_per_kwh: must fall in that order, not {prices} (else "
                             "trading against the imbalance prices pays without bound)")

    @property
    def n_scenarios(self) -> int:
        return self.load_kw.shape[0]

    def take(self, scenarios) -> StochasticDay:
        """The same day on some of its scenarios."""
        from dataclasses import replace

        return replace(self, load_kw=self.load_kw[scenarios], pv_kw=self.pv_kw[scenarios])


@dataclass(frozen=True)
class StochasticSchedule:
    """A schedule and what it costs in each scenario.

    Attributes
    ----------
    position_kw : ndarray, shape (T,)
        The day-ahead position with the retailer (import positive) [kW].
    cost_eur : ndarray, shape (S,)
        The day's cost in each scenario [EUR].
    short_kwh, long_kwh : ndarray, shape (S,)
        The imbalance energy of each scenario [kWh].
    battery_kw : ndarray, shape (S, T, B)
        Each battery's output (discharge positive) [kW].
    """

    position_kw: np.ndarray
    cost_eur: np.ndarray
    short_kwh: np.ndarray
    long_kwh: np.ndarray
    battery_kw: np.ndarray

    def expected_cost_eur(self) -> float:
        return float(self.cost_eur.mean())

    def cvar_eur(self, alpha: float) -> float:
        """CVaR_alpha of the cost over the (equally likely) scenarios: the mean of the worst
        ``1 - alpha`` of them (Rockafellar & Uryasev's minimum over ``eta``)."""
        return cvar(self.cost_eur, alpha)


def cvar(cost_eur: np.ndarray, alpha: float) -> float:
    """CVaR_alpha of equally likely outcomes: ``min_eta eta + E[(c - eta)+] / (1 - alpha)``,
    attained at an outcome (the objective is piecewise linear in ``eta``)."""
    c = np.sort(np.asarray(cost_eur, dtype=float))
    n = len(c)
    # for eta = c_k: E[(c - eta)+] = (sum of c_j for j > k - (n - 1 - k) c_k) / n
    above = np.cumsum(c[::-1])[::-1] - c  # sum of the outcomes after each one
    excess = (above - (n - 1 - np.arange(n)) * c) / n
    return float((c + excess / (1 - alpha)).min())


def solve_schedule(day: StochasticDay, risk_weight: float = 0.0, alpha: float = 0.9,
                   position_kw: np.ndarray | None = None) -> StochasticSchedule:
    """The two-stage schedule of the day (see module doc), or, with ``position_kw``, each
    scenario's best recourse to that fixed day-ahead position.

    Parameters
    ----------
    risk_weight : float
        ``beta`` in [0, 1]: 0 risk-neutral, 1 CVaR only.
    alpha : float
        CVaR level in (0, 1): the mean of the worst ``1 - alpha`` of the scenarios.

    Raises
    ------
    InputError
        If ``risk_weight`` or ``alpha`` is out of range.
    InfeasibleError
        If HiGHS does not solve the LP to optimality.
    """
    from lemgrid.assets.battery import add_energy_balance
    from lemgrid.market.lp import LinearProgram

    if not 0 <= risk_weight <= 1:
        raise InputError(f"risk_weight: must be in [0, 1], not {risk_weight}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha: must be in (0, 1), not {alpha}")
    s_n, n_t, _ = day.load_kw.shape
    b = day.batteries
    n_b, dt = len(b), day.dt_h
    p = np.full(s_n, 1.0 / s_n)
    lp = LinearProgram()
    fixed = position_kw is not None
    g_in = np.maximum(np.asarray(position_kw), 0) if fixed else 0.0
    g_out = np.maximum(-np.asarray(position_kw), 0) if fixed else np.inf
    # the first stage's cost is every scenario's: weighted by 1 in the expectation
    w_mean = 1.0 - risk_weight
    g_plus = lp.var(n_t, lb=g_in, ub=g_in if fixed else np.inf,
                    cost=dt * day.buy_eur_per_kwh)
    g_minus = lp.var(n_t, lb=g_out if fixed else 0.0, ub=g_out,
                     cost=-dt * day.sell_eur_per_kwh)
    short = lp.var((s_n, n_t), cost=w_mean * p[:, None] * dt * day.short_eur_per_kwh)
    long = lp.var((s_n, n_t), cost=-w_mean * p[:, None] * dt * day.long_eur_per_kwh)
    wear = w_mean * p[:, None, None] * dt * day.wear_eur_per_kwh
    ch = lp.var((s_n, n_t, n_b), ub=np.broadcast_to(b.power_kw, (s_n, n_t, n_b)), cost=wear)
    dis = lp.var((s_n, n_t, n_b), ub=np.broadcast_to(b.power_kw, (s_n, n_t, n_b)), cost=wear)
    e_lb = np.broadcast_to(b.soc_min * b.capacity_kwh, (s_n, n_t, n_b)).copy()
    e_ub = np.broadcast_to(b.soc_max * b.capacity_kwh, (s_n, n_t, n_b)).copy()
    e_lb[:, -1] = np.maximum(e_lb[:, -1], b.soc_final * b.capacity_kwh)
    energy = lp.var((s_n, n_t, n_b), lb=e_lb, ub=e_ub)
    # the community's balance: sum_b (c - d) - g+ + g- - short + long = pv - load
    net_kw = (day.pv_kw - day.load_kw).sum(axis=2)
    rows = lp.rows((s_n, n_t), lower=net_kw, upper=net_kw)
    lp.coef(rows[:, :, None], ch, 1.0)
    lp.coef(rows[:, :, None], dis, -1.0)
    lp.coef(rows, g_plus[None, :], -1.0)
    lp.coef(rows, g_minus[None, :], 1.0)
    lp.coef(rows, short, -1.0)
    lp.coef(rows, long, 1.0)
    add_energy_balance(lp, energy, ch, dis, b, dt)
    if risk_weight > 0:
        # CVaR: eta + sum_s p_s u_s / (1 - alpha), u_s >= cost_s - eta (the recourse part; the
        # first stage adds the same to every cost_s and to eta)
        eta = lp.var(1, lb=-np.inf, cost=risk_weight)
        u = lp.var(s_n, cost=risk_weight * p / (1 - alpha))
        rows = lp.rows(s_n, lower=0.0)  # u_s + eta - recourse_s >= 0
        lp.coef(rows, u, 1.0)
        lp.coef(rows, eta, 1.0)
        lp.coef(rows[:, None], short, -dt * day.short_eur_per_kwh)
        lp.coef(rows[:, None], long, dt * day.long_eur_per_kwh)
        lp.coef(rows[:, None, None], ch, -dt * day.wear_eur_per_kwh)
        lp.coef(rows[:, None, None], dis, -dt * day.wear_eur_per_kwh)
    # interior point for many scenarios' blocks; the simplex for one
    solution = lp.solve(solver="ipm" if s_n > 1 else None)
    if solution.status != "Optimal":
        raise InfeasibleError(f"stochastic schedule: HiGHS ended with {solution.status}")
    x = solution.x
    position = x[g_plus] - x[g_minus]
    first = dt * (day.buy_eur_per_kwh * x[g_plus] - day.sell_eur_per_kwh * x[g_minus]).sum()
    recourse = dt * (day.short_eur_per_kwh * x[short] - day.long_eur_per_kwh * x[long]).sum(1) \
        + dt * day.wear_eur_per_kwh * (x[ch] + x[dis]).sum(axis=(1, 2))
    return StochasticSchedule(position, first + recourse, x[short].sum(1) * dt,
                              x[long].sum(1) * dt, x[dis] - x[ch])


def recourse(day: StochasticDay, position_kw: np.ndarray) -> StochasticSchedule:
    """Each scenario's best recourse to a fixed day-ahead position, scenario by scenario (the
    recourse problems are independent: many small LPs solve faster than one large one)."""
    each = [solve_schedule(day.take([s]), position_kw=position_kw)
            for s in range(day.n_scenarios)]
    return StochasticSchedule(np.asarray(position_kw, float),
                              *(np.concatenate([getattr(x, name) for x in each])
                                for name in ("cost_eur", "short_kwh", "long_kwh",
                                             "battery_kw")))
