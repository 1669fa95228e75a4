"""Community market: one manager schedules all members over the horizon to maximise welfare.

The manager knows every member's inflexible load and PV, batteries, EV charging windows and
shiftable loads, and trades the community's net position with the upstream retailer (import price
plus network charge; feed-in tariff for exports). With inflexible demand, maximising welfare is
minimising the community's energy cost plus the value of curtailed PV. The internal price of each
interval is the dual of the community's energy balance (Parag & Sovacool, "Electricity market
design for the prosumer era", Nature Energy 1, 2016; Moret & Pinson, "Energy collectives: a
community and fairness based approach to future electricity markets", IEEE Trans. Power Syst.
34(5), 2019).

With ``network`` constraints the balance moves to the point of common coupling, bus injections are
linked to voltages, branch loadings and the import (losses) by the sensitivities of
:mod:`lemgrid.grid.sensitivity`, and the prices become distribution locational marginal prices
(DLMPs) with energy, loss, congestion and voltage components (Bai et al., "Distribution Locational
Marginal Pricing (DLMP) for Congestion Management and Voltage Support", IEEE Trans. Power Syst.
33(4), 2018). The re-linearisation loop and AC check are in
:mod:`lemgrid.market.community_constrained`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lemgrid.assets.kinds import KindPlan, asset_kind
from lemgrid.assets.tables import Batteries, EnergyWindows
from lemgrid.errors import InfeasibleError, InputError
from lemgrid.grid.kpis import GridLimits
from lemgrid.grid.sensitivity import Linearization
from lemgrid.market.lp import LinearProgram, LPSolution
from lemgrid.scenario.config import CommunityOptions  # the design's options (scenario format)


#: Threshold above which a battery is seen as charging and discharging at once [kW].
SIMULTANEOUS_KW = 1e-6
#: Penalty on violating a linearised grid limit, per p.u. / per % and interval [EUR]; only used to
#: find out *which* limit cannot be met (the result is then refused).
VOLTAGE_PENALTY_EUR_PER_PU = 1e6
LOADING_PENALTY_EUR_PER_PERCENT = 1e4
#: Penalty per EUR the members' total bill exceeds their business-as-usual bills, in
#: network-constrained clearing (where grid limits may make it unavoidable).
REFERENCE_PENALTY_EUR_PER_EUR = 1e3
#: Time limit and relative optimality gap of the (rare) MILP that keeps batteries from charging
#: and discharging at once; cycling to burn energy is combinatorial and closing the last 0.01 %
#: of the gap can take minutes.
MILP_TIME_LIMIT_S = 30.0
MILP_REL_GAP = 1e-3


@dataclass(frozen=True, eq=False)
class CommunityProblem:
    """Everything the community manager knows, as arrays.

    Attributes
    ----------
    ids : ndarray of str, shape (N,)
    bus : ndarray of int, shape (N,)
        Bus position of each member.
    dt_h : float
        Interval length [h].
    load_p_kw, pv_p_kw : ndarray, shape (T, N)
        Inflexible consumption and available PV [kW].
    batteries : Batteries
    windows : EnergyWindows
    import_eur_per_kwh, export_eur_per_kwh : ndarray, shape (T,) or (T, N)
        What the community pays per imported kWh (energy + network charge) and receives per
        exported kWh.
    curtailment_eur_per_kwh : float
        Value of PV energy that is curtailed [EUR/kWh]. Energy lost in battery conversion is valued
        the same way: lost is lost, whether curtailed or burnt in losses.
    battery_wear_eur_per_kwh : float
        Wear cost per kWh charged or discharged [EUR/kWh]. Together with the valued losses it makes
        charging and discharging at once strictly worse than curtailing.
    local_network_eur_per_kwh, levies_eur_per_kwh : float
        What the members' bills add to the retailer's prices (``lemgrid.settlement.bills``): the
        local network charge on each kWh a member draws that the community matches locally
        (imported kWh pay the full network charge, inside the import price), and levies on each
        kWh a member draws [EUR/kWh]. With them the objective is what the members pay in total.
    final_soc_kwh : ndarray, shape (B,), optional
        Energy each battery must hold at the end, exactly [kWh] (default: at least
        ``soc_final x capacity``).
    reference_cost_eur : float, optional
        What the members would pay in total without the community (their own business-as-usual
        bills over the horizon, fixed fees apart) [EUR]: the clearing may not cost them more
        (a constraint; elastic in network-constrained clearing, where the business-as-usual
        schedule itself may break a grid limit).
    kinds : dict[str, column table]
        Assets of registered kinds (:mod:`lemgrid.assets.kinds`), time series cut to the
        horizon; each kind adds its own variables and constraints.
    kinds_final_state : dict[str, ndarray (A,)], optional
        State each such asset must at least reach at the end (e.g. business-as-usual's).
    """

    ids: np.ndarray
    bus: np.ndarray
    dt_h: float
    load_p_kw: np.ndarray
    pv_p_kw: np.ndarray
    batteries: Batteries
    windows: EnergyWindows
    import_eur_per_kwh: np.ndarray
    export_eur_per_kwh: np.ndarray
    curtailment_eur_per_kwh: float
    battery_wear_eur_per_kwh: float = 0.001
    local_network_eur_per_kwh: float = 0.0
    levies_eur_per_kwh: float = 0.0
    final_soc_kwh: np.ndarray | None = None
    reference_cost_eur: float | None = None
    kinds: dict = field(default_factory=dict)
    kinds_final_state: dict | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.load_p_kw.shape

    @classmethod
    def from_scenario(cls, scenario, options: CommunityOptions = CommunityOptions(),
                      interval_slice: slice = slice(None)) -> CommunityProblem:
        """The community problem of a scenario (optionally of a slice of its intervals)."""
        from lemgrid.assets.tables import EnergyWindows

        parts = scenario.participants
        n_t = len(scenario.time_index[interval_slice])
        t0 = range(len(scenario.time_index))[interval_slice].start if n_t else 0
        tariffs = scenario.tariffs
        windows = parts.windows
        if len(windows) and (interval_slice != slice(None)):
            inside = (windows.start >= t0) & (windows.stop <= t0 + n_t)
            windows = EnergyWindows(**{
                name: (getattr(windows, name)[inside] - (t0 if name in ("start", "stop") else 0))
                for name in ("owner", "name", "kind", "start", "stop", "energy_kwh", "power_kw")})
        curtail = (tariffs.export_eur_per_kwh if options.curtailment_eur_per_kwh is None
                   else options.curtailment_eur_per_kwh)
        return cls(
            ids=parts.ids, bus=parts.bus, dt_h=scenario.dt_h,
            load_p_kw=parts.load_p_kw[interval_slice], pv_p_kw=parts.pv_p_kw[interval_slice],
            batteries=parts.batteries, windows=windows,
            import_eur_per_kwh=np.full(n_t, tariffs.import_eur_per_kwh + tariffs.network_eur_per_kwh),
            export_eur_per_kwh=np.full(n_t, tariffs.export_eur_per_kwh),
            curtailment_eur_per_kwh=float(curtail),
            battery_wear_eur_per_kwh=options.battery_wear_eur_per_kwh,
            kinds={name: asset_kind(name).window(table, t0, t0 + n_t)
                   for name, table in parts.kinds.items()},
        )


@dataclass(frozen=True, eq=False)
class NetworkView:
    """Linearised grid limits for the clearing.

    Attributes
    ----------
    linearization : Linearization
        Sensitivities at the operating points (one per interval).
    limits : GridLimits
    background_p_kw : ndarray, shape (T, n_bus)
        Injections of non-members [kW].
    monitored_buses : ndarray of int
        Bus positions whose voltage band is enforced (energised, not the slack).
    losses : bool
        Model losses through the import's sensitivity (else import = minus the sum of injections).
    schedule_lower_kw, schedule_upper_kw : ndarray, shape (T, N), optional
        Step bounds on the members' net injections around the linearisation point [kW]: the
        linear model is trusted only within them (see
        :mod:`lemgrid.market.community_constrained`). Default: none.
    """

    linearization: Linearization
    limits: GridLimits
    background_p_kw: np.ndarray
    monitored_buses: np.ndarray
    losses: bool = True
    schedule_lower_kw: np.ndarray | None = None
    schedule_upper_kw: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class CommunityResult:
    """The manager's schedule and prices.

    Attributes
    ----------
    schedule_kw : ndarray, shape (T, N)
        Net injection of each member [kW] (export positive).
    import_kw, export_kw : ndarray, shape (T,)
        The community's exchange with the retailer at the point of common coupling [kW].
    charge_kw, discharge_kw, soc_kwh : ndarray, shape (T, B)
        Battery operation (state of charge at the end of each interval).
    window_kw : ndarray, shape (T, N)
        Power drawn by each member's EVs and shiftable loads [kW].
    window_schedule_kw : ndarray, shape (T, S)
        The same per session.
    curtailment_kw : ndarray, shape (T, N)
    price_eur_per_kwh : ndarray, shape (T,)
        Internal (energy) price: the dual of the community's balance [EUR/kWh].
    bus_price_eur_per_kwh : ndarray, shape (T, n_bus) or None
        DLMP of each bus (network-constrained clearing only).
    dlmp_components : dict[str, ndarray (T, n_bus)] or None
        'energy', 'loss', 'congestion', 'voltage'; they add up to ``bus_price_eur_per_kwh``.
    member_price_eur_per_kwh : ndarray, shape (T, N)
        Price each member trades at (its bus's DLMP, or the internal price).
    member_cost_eur : ndarray, shape (N,)
        What each member pays the community over the horizon: its net consumption at its price,
        plus an equal share of the community's surplus or deficit (so that the members' payments
        add up to exactly what the community pays the retailer).
    retailer_cost_eur : float
        Imports x import price minus exports x export price.
    welfare_eur : float
        Minus the community's cost: retailer cost, the value of curtailed PV and of battery
        losses, and battery wear (the LP's objective, less the members' local network charges and
        levies where the problem has them). Demand is inflexible, so its utility is a constant
        and left out.
    solve_seconds : float
    lp_solves : int
        LP/MILP solves (more than one when batteries had to be kept from charging and discharging
        at once).
    lp_basis : object or None
        HiGHS basis of the final LP (``warm_start`` of a re-solve with other coefficients).
    kinds : dict[str, KindPlan]
        Schedules of the assets of registered kinds.
    """

    schedule_kw: np.ndarray
    import_kw: np.ndarray
    export_kw: np.ndarray
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    soc_kwh: np.ndarray
    window_kw: np.ndarray
    window_schedule_kw: np.ndarray
    curtailment_kw: np.ndarray
    price_eur_per_kwh: np.ndarray
    bus_price_eur_per_kwh: np.ndarray | None
    dlmp_components: dict | None
    member_price_eur_per_kwh: np.ndarray
    member_cost_eur: np.ndarray
    retailer_cost_eur: float
    welfare_eur: float
    solve_seconds: float
    lp_solves: int
    lp_basis: object | None = None
    kinds: dict[str, KindPlan] = field(default_factory=dict)


def _check_problem(problem: CommunityProblem) -> None:
    n_t, n = problem.shape
    for name in ("load_p_kw", "pv_p_kw"):
        array = getattr(problem, name)
        if array.shape != (n_t, n):
            raise InputError(f"community: {name} must have shape {(n_t, n)}, got {array.shape}")
        if not np.isfinite(array).all():
            t, i = np.argwhere(~np.isfinite(array))[0]
            raise InputError(f"community: {name} of member {str(problem.ids[i])!r} at interval {t} is "
                             "not a finite number")
        if (array < 0).any():
            t, i = np.argwhere(array < 0)[0]
            raise InputError(f"community: {name} of member {str(problem.ids[i])!r} at interval {t} is "
                             f"negative ({array[t, i]})")
    b = problem.batteries
    start, final = b.soc_initial * b.capacity_kwh, _final_kwh(problem)
    up = start + b.eta_charge * b.power_kw * n_t * problem.dt_h
    down = start - b.power_kw * n_t * problem.dt_h / b.eta_discharge
    short = np.flatnonzero((up + 1e-9 < final) | (down - 1e-9 > final))
    if len(short):
        k = short[0]
        raise InfeasibleError(
            f"battery {str(b.name[k])!r} of {str(problem.ids[b.owner[k]])!r} cannot reach its final "
            f"energy {final[k]:.3g} kWh from {start[k]:.3g} kWh within the horizon")
    s = problem.windows
    need = s.energy_kwh > s.power_kw * (s.stop - s.start) * problem.dt_h + 1e-9
    if need.any():
        k = int(np.flatnonzero(need)[0])
        raise InfeasibleError(
            f"{s.kind[k]} {str(s.name[k])!r} of {str(problem.ids[s.owner[k]])!r} cannot take "
            f"{s.energy_kwh[k]:.3g} kWh at {s.power_kw[k]} kW within its window")


def _final_kwh(problem: CommunityProblem) -> np.ndarray:
    """Energy each battery must end with (exactly if ``final_soc_kwh``, else at least) [kWh]."""
    b = problem.batteries
    if problem.final_soc_kwh is not None:
        return np.asarray(problem.final_soc_kwh, float)
    return np.maximum(b.soc_final, b.soc_min) * b.capacity_kwh


def solve_community(problem: CommunityProblem, network: NetworkView | None = None,
                    individual: bool = False, *, warm_start: object | None = None
                    ) -> CommunityResult:
    """Clear the community market over the whole horizon (one LP; MILP only if needed).

    Parameters
    ----------
    problem : CommunityProblem
    network : NetworkView, optional
        Linearised grid limits (network-constrained clearing with DLMPs).
    individual : bool
        Every member balances alone against the prices (then of shape (T, N)): the sum of
        independent prosumer problems, e.g. optimising agents scheduling against a price forecast.
        ``import_kw``/``export_kw`` and the prices of the result are then (T, N).
    warm_start : optional
        ``lp_basis`` of an earlier result of the same problem (e.g. the previous round of
        network-constrained clearing): HiGHS starts from it, which saves most simplex
        iterations; where the optimum is not unique it may end at another optimal vertex.

    Raises
    ------
    InfeasibleError
        A battery or session that cannot meet its energy, or grid limits that no schedule can meet
        (naming the bus or branch and interval).
    """
    _check_problem(problem)
    forced: set[tuple[int, int]] = set()
    solves = 0
    seconds = 0.0
    while True:
        model = _Model(problem, network, sorted(forced), individual=individual)
        solution = model.lp.solve(time_limit_s=MILP_TIME_LIMIT_S if forced else None,
                                  mip_rel_gap=MILP_REL_GAP, warm_start=warm_start)
        solves, seconds = solves + 1, seconds + solution.seconds
        if solution.status not in ("Optimal", "Feasible"):
            raise InfeasibleError(f"community clearing: the solver ended with '{solution.status}'")
        if forced:
            # MILP solved: fix the modes it chose and solve the LP again for the duals (prices).
            if model.modes is None:
                raise RuntimeError("community clearing: a MILP model without mode variables")
            modes = np.round(solution[model.modes]).astype(bool)
            model = _Model(problem, network, sorted(forced), modes, individual=individual)
            solution = model.lp.solve(warm_start=warm_start)
            solves, seconds = solves + 1, seconds + solution.seconds
        both = np.argwhere((solution[model.ch] > SIMULTANEOUS_KW)
                           & (solution[model.dis] > SIMULTANEOUS_KW))
        if not len(both):
            break
        # The LP found it cheaper to burn energy in battery losses than to curtail; a battery
        # cannot do both at once, so those intervals get a binary charge/discharge mode.
        forced |= {(int(t), int(b)) for t, b in both}
    model.check_slacks(solution)
    return model.result(solution, seconds, solves)


class _Model:
    """The LP of one community clearing."""

    def __init__(self, problem: CommunityProblem, network: NetworkView | None,
                 forced: list[tuple[int, int]], fixed_modes: np.ndarray | None = None,
                 individual: bool = False) -> None:
        self.problem, self.network = problem, network
        lp = self.lp = LinearProgram()
        n_t, n = problem.shape
        dt = problem.dt_h
        b, s = problem.batteries, problem.windows

        # Members' net injections x = pv - curtailment - load - battery - windows.
        step_lb = None if network is None else network.schedule_lower_kw
        step_ub = None if network is None else network.schedule_upper_kw
        self.x = lp.var((n_t, n), lb=-np.inf if step_lb is None else step_lb,
                        ub=np.inf if step_ub is None else step_ub)
        self.curt = lp.var((n_t, n), ub=problem.pv_p_kw, cost=problem.curtailment_eur_per_kwh * dt)
        ch_ub = np.broadcast_to(b.power_kw, (n_t, len(b))).copy()
        dis_ub = ch_ub.copy()
        forced_t = np.array([p[0] for p in forced], dtype=int)
        forced_b = np.array([p[1] for p in forced], dtype=int)
        if fixed_modes is not None:
            # Modes fixed after the MILP: charging-only or discharging-only intervals.
            dis_ub[forced_t[fixed_modes], forced_b[fixed_modes]] = 0.0
            ch_ub[forced_t[~fixed_modes], forced_b[~fixed_modes]] = 0.0
        value, wear = problem.curtailment_eur_per_kwh, problem.battery_wear_eur_per_kwh
        self.lp_cost_ch = dt * (value * (1 - b.eta_charge) + wear)[None, :]
        self.lp_cost_dis = dt * (value * (1 / b.eta_discharge - 1) + wear)[None, :]
        self.ch = lp.var((n_t, len(b)), ub=ch_ub, cost=self.lp_cost_ch)
        self.dis = lp.var((n_t, len(b)), ub=dis_ub, cost=self.lp_cost_dis)
        soc_ub = np.broadcast_to(b.soc_max * b.capacity_kwh, (n_t, len(b))).copy()
        soc_lb = np.broadcast_to(b.soc_min * b.capacity_kwh, (n_t, len(b))).copy()
        if n_t:
            soc_lb[-1] = np.maximum(soc_lb[-1], _final_kwh(problem))
            if problem.final_soc_kwh is not None:
                soc_ub[-1] = soc_lb[-1]
        self.soc = lp.var((n_t, len(b)), lb=soc_lb, ub=soc_ub)
        length = (s.stop - s.start).astype(int)
        self.ses_session = np.repeat(np.arange(len(s)), length)
        self.ses_t = (np.concatenate([np.arange(a, z) for a, z in zip(s.start, s.stop, strict=True)])
                      if len(s) else np.array([], dtype=int))
        self.ses = lp.var(len(self.ses_t), ub=s.power_kw[self.ses_session])
        exchange = (n_t, n) if individual else n_t
        # A kWh a member draws pays levies, and the local network charge unless it is imported
        # (then the import price holds the full network charge): the members' bills in total.
        local, levies = problem.local_network_eur_per_kwh, problem.levies_eur_per_kwh
        self.cost_imp = (problem.import_eur_per_kwh - local) * dt
        self.cost_exp = -problem.export_eur_per_kwh * dt
        self.imp = lp.var(exchange, cost=self.cost_imp)
        self.exp = lp.var(exchange, cost=self.cost_exp)
        self.drawn, self.cost_drawn = None, (local + levies) * dt
        if self.cost_drawn > 0:
            self.drawn = lp.var((n_t, n), cost=self.cost_drawn)  # max(-x, 0)
            drawn_rows = lp.rows((n_t, n), lower=0.0)
            lp.coef(drawn_rows, self.drawn, 1.0)
            lp.coef(drawn_rows, self.x, 1.0)

        rows = lp.rows((n_t, n), lower=problem.pv_p_kw - problem.load_p_kw,
                       upper=problem.pv_p_kw - problem.load_p_kw)
        lp.coef(rows, self.x, 1.0)
        lp.coef(rows, self.curt, 1.0)
        lp.coef(rows[:, b.owner], self.ch, 1.0)
        lp.coef(rows[:, b.owner], self.dis, -1.0)
        lp.coef(rows[self.ses_t, s.owner[self.ses_session]], self.ses, 1.0)
        # Assets of registered kinds: their own variables and constraints, their draw in the
        # owners' balance.
        self.kind_blocks = {}
        for name, table in problem.kinds.items():
            if not len(table):
                continue
            final = (problem.kinds_final_state or {}).get(name)
            block = asset_kind(name).lp_block(lp, table, dt, final)
            for var, coef in block.draw:
                lp.coef(rows[:, table.owner], var, coef)
            self.kind_blocks[name] = block

        # Battery energy: soc_t = soc_{t-1} + eta_c ch dt - dis dt / eta_d.
        start_energy = np.zeros((n_t, len(b)))
        if n_t:
            start_energy[0] = b.soc_initial * b.capacity_kwh
        soc_rows = lp.rows((n_t, len(b)), lower=start_energy, upper=start_energy)
        lp.coef(soc_rows, self.soc, 1.0)
        lp.coef(soc_rows[1:], self.soc[:-1], -1.0)
        lp.coef(soc_rows, self.ch, -b.eta_charge[None, :] * dt)
        lp.coef(soc_rows, self.dis, dt / b.eta_discharge[None, :])

        # Windows deliver their energy within their window.
        ses_rows = lp.rows(len(s), lower=s.energy_kwh, upper=s.energy_kwh)
        lp.coef(ses_rows[self.ses_session], self.ses, dt)

        # Binary charge/discharge modes where the LP wanted both at once (MILP).
        self.modes = None
        if forced and fixed_modes is None:
            p_max = b.power_kw[forced_b]
            self.modes = lp.var(len(forced), lb=0, ub=1, integer=True)
            charge_rows = lp.rows(len(forced), upper=0.0)  # ch <= P * mode
            lp.coef(charge_rows, self.ch[forced_t, forced_b], 1.0)
            lp.coef(charge_rows, self.modes, -p_max)
            discharge_rows = lp.rows(len(forced), upper=p_max)  # dis <= P * (1 - mode)
            lp.coef(discharge_rows, self.dis[forced_t, forced_b], 1.0)
            lp.coef(discharge_rows, self.modes, p_max)

        if individual:
            if network is not None:
                raise InputError("community: individual balances take no network view")
            self.balance = lp.rows((n_t, n), lower=0.0, upper=0.0)
            lp.coef(self.balance, self.x, 1.0)
            lp.coef(self.balance, self.imp, 1.0)
            lp.coef(self.balance, self.exp, -1.0)
        elif network is None:
            # Energy balance of the community: sum of injections + import - export = 0.
            self.balance = lp.rows(n_t, lower=0.0, upper=0.0)
            lp.coef(self.balance[:, None], self.x, 1.0)
            lp.coef(self.balance, self.imp, 1.0)
            lp.coef(self.balance, self.exp, -1.0)
        else:
            self._network_rows(network)
        if problem.reference_cost_eur is not None and not individual:
            self._reference_row(problem.reference_cost_eur, elastic=network is not None)

    def _reference_row(self, reference_eur: float, elastic: bool) -> None:
        """The members' total bill (the objective's money part) at most ``reference_eur``."""
        lp, (n_t, n) = self.lp, self.problem.shape
        row = lp.rows(1, upper=reference_eur)
        lp.coef(np.full(n_t, row[0]), self.imp, np.broadcast_to(self.cost_imp, n_t))
        lp.coef(np.full(n_t, row[0]), self.exp, np.broadcast_to(self.cost_exp, n_t))
        if self.drawn is not None:
            lp.coef(np.full((n_t, n), row[0]), self.drawn, self.cost_drawn)
        if elastic:
            excess = lp.var(1, cost=REFERENCE_PENALTY_EUR_PER_EUR)
            lp.coef(row, excess, -1.0)

    def _network_rows(self, view: NetworkView) -> None:
        lp, problem = self.lp, self.problem
        lin, limits = view.linearization, view.limits
        n_t = problem.shape[0]
        n_bus = lin.vm_pu.shape[1]
        # Bus injections P = members at the bus + background.
        self.p_bus = lp.var((n_t, n_bus), lb=-np.inf)
        self.bus_rows = lp.rows((n_t, n_bus), lower=view.background_p_kw, upper=view.background_p_kw)
        lp.coef(self.bus_rows, self.p_bus, 1.0)
        lp.coef(self.bus_rows[:, problem.bus], self.x, -1.0)
        # Import at the point of common coupling, losses through the slack's sensitivity.
        p0 = lin.p_inj_kw
        if view.losses:
            s_coef = lin.dpslack_dp
            const = lin.p_slack_kw - (s_coef * p0).sum(axis=1)
        else:
            s_coef = -np.ones((n_t, n_bus))
            const = np.zeros(n_t)
        self.s_coef = s_coef
        self.pcc = lp.rows(n_t, lower=const, upper=const)
        lp.coef(self.pcc, self.imp, 1.0)
        lp.coef(self.pcc, self.exp, -1.0)
        lp.coef(self.pcc[:, None], self.p_bus, -s_coef)

        # Voltage band at monitored buses (energised, not the slack).
        monitored = self.monitored = view.monitored_buses
        dv = lin.dvm_dp[:, monitored, :]  # (T, M, n_bus)
        offset = lin.vm_pu[:, monitored] - np.einsum("tmj,tj->tm", dv, p0)
        self.v_rows = lp.rows((n_t, len(monitored)), lower=limits.vm_min_pu - offset,
                              upper=limits.vm_max_pu - offset)
        lp.coef(self.v_rows[:, :, None], self.p_bus[:, None, :], dv)
        self.v_slack = lp.var((n_t, len(monitored), 2), cost=VOLTAGE_PENALTY_EUR_PER_PU)
        lp.coef(self.v_rows, self.v_slack[:, :, 0], 1.0)
        lp.coef(self.v_rows, self.v_slack[:, :, 1], -1.0)

        # Branch loading (the more loaded end at the operating point).
        dl = lin.dloading_dp
        offset_l = lin.loading_percent - np.einsum("tbj,tj->tb", dl, p0)
        self.l_rows = lp.rows(lin.loading_percent.shape,
                              upper=limits.max_loading_percent - offset_l)
        lp.coef(self.l_rows[:, :, None], self.p_bus[:, None, :], dl)
        self.l_slack = lp.var(lin.loading_percent.shape, cost=LOADING_PENALTY_EUR_PER_PERCENT)
        lp.coef(self.l_rows, self.l_slack, -1.0)

    def check_slacks(self, solution: LPSolution) -> None:
        if self.network is None:
            return
        lin = self.network.linearization
        v_slack = solution[self.v_slack]
        l_slack = solution[self.l_slack]
        if v_slack.max(initial=0) > 1e-6:
            t, m, side = np.unravel_index(np.argmax(v_slack), v_slack.shape)
            bus = int(self.monitored[m])
            kind = "below the lower" if side == 0 else "above the upper"
            raise InfeasibleError(
                f"grid limits cannot be met: in interval {t} the voltage at bus position {bus} stays "
                f"{v_slack[t, m, side]:.4f} p.u. {kind} limit even with all flexibility "
                f"(operating point {lin.vm_pu[t, bus]:.4f} p.u.)")
        if l_slack.max(initial=0) > 1e-4:
            t, br = np.unravel_index(np.argmax(l_slack), l_slack.shape)
            raise InfeasibleError(
                f"grid limits cannot be met: in interval {t} branch position {br} stays "
                f"{l_slack[t, br]:.2f} % above its loading limit even with all flexibility")

    def result(self, solution: LPSolution, seconds: float, solves: int) -> CommunityResult:
        problem, dt = self.problem, self.problem.dt_h
        n_t, n = problem.shape
        x = solution[self.x]
        imp, exp = solution[self.imp], solution[self.exp]
        session_schedule = np.zeros((n_t, len(problem.windows)))
        session_schedule[self.ses_t, self.ses_session] = solution[self.ses]
        window_kw = np.zeros((n_t, n))
        # Along the participant axis of the transposed view (same sums, same order).
        np.add.at(window_kw.T, problem.windows.owner, session_schedule.T)
        components = None
        bus_price = None
        if self.network is None:
            price = solution.row_dual[self.balance] / dt
            member_price = (price if price.ndim == 2
                            else np.broadcast_to(price[:, None], (n_t, n)).copy())
        else:
            lin = self.network.linearization
            price = solution.row_dual[self.pcc] / dt
            bus_price = -solution.row_dual[self.bus_rows] / dt
            mu = solution.row_dual[self.v_rows]  # (T, M)
            nu = solution.row_dual[self.l_rows]  # (T, nbr)
            voltage = np.einsum("tm,tmj->tj", mu, lin.dvm_dp[:, self.monitored, :]) / dt
            congestion = np.einsum("tb,tbj->tj", nu, lin.dloading_dp) / dt
            energy = np.broadcast_to(price[:, None], bus_price.shape).copy()
            loss = (-self.s_coef - 1.0) * price[:, None]
            components = {"energy": energy, "loss": loss, "congestion": congestion,
                          "voltage": voltage}
            member_price = bus_price[:, problem.bus]
        retailer = float(((problem.import_eur_per_kwh * imp - problem.export_eur_per_kwh * exp)
                          * dt).sum())  # (also for individual balances: prices and flows (T, N))
        paid = (member_price * -x * dt).sum(axis=0)
        surplus = paid.sum() - retailer
        member_cost = paid - surplus / max(n, 1)
        curt = solution[self.curt]
        welfare = -(retailer + float((curt * problem.curtailment_eur_per_kwh * dt).sum())
                    + float((solution[self.ch] * self.lp_cost_ch).sum()
                            + (solution[self.dis] * self.lp_cost_dis).sum()))
        return CommunityResult(
            schedule_kw=x, import_kw=imp, export_kw=exp, charge_kw=solution[self.ch],
            discharge_kw=solution[self.dis], soc_kwh=solution[self.soc], window_kw=window_kw,
            window_schedule_kw=session_schedule,
            curtailment_kw=curt, price_eur_per_kwh=price, bus_price_eur_per_kwh=bus_price,
            dlmp_components=components, member_price_eur_per_kwh=member_price,
            member_cost_eur=member_cost, retailer_cost_eur=retailer, welfare_eur=welfare,
            solve_seconds=seconds, lp_solves=solves, lp_basis=solution.basis,
            kinds={name: block.read(solution) for name, block in self.kind_blocks.items()},
        )
