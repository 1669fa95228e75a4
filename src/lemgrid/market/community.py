"""Community market: one manager schedules all members over the horizon to maximise welfare.

The manager knows every member's inflexible load and PV and its flexible assets (batteries, EV
charging windows, shiftable loads, heat pumps: every asset kind of :mod:`lemgrid.assets.kinds`
adds its own variables and constraints), and trades the community's net position with the
upstream retailer (import price plus network charge; feed-in tariff for exports). With
inflexible demand, maximising welfare is minimising the community's energy cost plus the value of
curtailed PV. The internal price of each
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

from lemgrid.assets.kinds import KindPlan, LPContext, asset_kind
from lemgrid.assets.tables import KindTableViews
from lemgrid.errors import InfeasibleError, InputError
from lemgrid.grid.kpis import GridLimits
from lemgrid.grid.sensitivity import Linearization
from lemgrid.market.lp import LinearProgram, LPSolution
from lemgrid.scenario.config import CommunityOptions  # the design's options (scenario format)


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
class CommunityProblem(KindTableViews):
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
    reference_cost_eur : float, optional
        What the members would pay in total without the community (their own business-as-usual
        bills over the horizon, fixed fees apart) [EUR]: the clearing may not cost them more
        (a constraint; elastic in network-constrained clearing, where the business-as-usual
        schedule itself may break a grid limit).
    kinds : dict[str, column table]
        The members' flexible assets by kind (:mod:`lemgrid.assets.kinds`: batteries, EV and
        shiftable-load windows, heat pumps, ...), time series cut to the horizon; each kind adds
        its own variables and constraints.
    kinds_final_state : dict[str, ndarray (A,)], optional
        State each asset must reach at the end (e.g. business-as-usual's): a battery's stored
        energy exactly [kWh] (default: at least ``soc_final x capacity``), a heat pump's stored
        heat at least.
    """

    ids: np.ndarray
    bus: np.ndarray
    dt_h: float
    load_p_kw: np.ndarray
    pv_p_kw: np.ndarray
    import_eur_per_kwh: np.ndarray
    export_eur_per_kwh: np.ndarray
    curtailment_eur_per_kwh: float
    battery_wear_eur_per_kwh: float = 0.001
    local_network_eur_per_kwh: float = 0.0
    levies_eur_per_kwh: float = 0.0
    reference_cost_eur: float | None = None
    kinds: dict = field(default_factory=dict)
    kinds_final_state: dict | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.load_p_kw.shape

    @property
    def final_soc_kwh(self) -> np.ndarray | None:
        """Energy each battery must end with exactly [kWh] (``kinds_final_state``), if set."""
        return (self.kinds_final_state or {}).get("battery")

    @classmethod
    def from_scenario(cls, scenario, options: CommunityOptions = CommunityOptions(),
                      interval_slice: slice = slice(None)) -> CommunityProblem:
        """The community problem of a scenario (optionally of a slice of its intervals: each
        kind's table cut to it, e.g. windows cut at its edges with their share of the energy)."""
        parts = scenario.participants
        n_t = len(scenario.time_index[interval_slice])
        t0 = range(len(scenario.time_index))[interval_slice].start if n_t else 0
        tariffs = scenario.tariffs
        curtail = (tariffs.export_eur_per_kwh if options.curtailment_eur_per_kwh is None
                   else options.curtailment_eur_per_kwh)
        return cls(
            ids=parts.ids, bus=parts.bus, dt_h=scenario.dt_h,
            load_p_kw=parts.load_p_kw[interval_slice], pv_p_kw=parts.pv_p_kw[interval_slice],
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
        Schedules of the assets of every kind (``charge_kw``, ``discharge_kw``, ``soc_kwh``,
        ``window_schedule_kw`` and ``window_kw`` read the battery's and the windows' ones).
    """

    schedule_kw: np.ndarray
    import_kw: np.ndarray
    export_kw: np.ndarray
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

    def _battery(self, key: str) -> np.ndarray:
        plan = self.kinds.get("battery")
        if plan is None:
            return np.zeros((self.schedule_kw.shape[0], 0))
        if key == "state":
            return plan.state
        return plan.detail.get(key, np.zeros(plan.output_kw.shape))

    @property
    def charge_kw(self) -> np.ndarray:
        """Battery charging (T, B) [kW]."""
        return self._battery("charge_kw")

    @property
    def discharge_kw(self) -> np.ndarray:
        """Battery discharging (T, B) [kW]."""
        return self._battery("discharge_kw")

    @property
    def soc_kwh(self) -> np.ndarray:
        """Energy in each battery at the end of each interval (T, B) [kWh]."""
        return self._battery("state")

    @property
    def window_schedule_kw(self) -> np.ndarray:
        """Power drawn by each EV / shiftable-load window (T, S) [kW]."""
        plan = self.kinds.get("energy_window")
        return np.zeros((self.schedule_kw.shape[0], 0)) if plan is None else -plan.output_kw

    @property
    def window_kw(self) -> np.ndarray:
        """Power drawn by each member's EVs and shiftable loads (T, N) [kW]."""
        out = np.zeros(self.schedule_kw.shape)
        plan = self.kinds.get("energy_window")
        if plan is not None:
            np.add.at(out.T, plan.owner, -plan.output_kw.T)
        return out


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
    forced: dict[str, set[tuple[int, int]]] = {}
    solves = 0
    seconds = 0.0
    while True:
        model = _Model(problem, network, _sorted(forced), individual=individual)
        solution = model.lp.solve(time_limit_s=MILP_TIME_LIMIT_S if forced else None,
                                  mip_rel_gap=MILP_REL_GAP, warm_start=warm_start)
        solves, seconds = solves + 1, seconds + solution.seconds
        if solution.status not in ("Optimal", "Feasible"):
            raise InfeasibleError(f"community clearing: the solver ended with '{solution.status}'")
        if forced:
            # MILP solved: fix the modes it chose and solve the LP again for the duals (prices).
            modes = {}
            for name, block in model.kind_blocks.items():
                if name in forced:
                    if block.modes is None:
                        raise RuntimeError(f"community clearing: the {name} block of a MILP "
                                           "has no mode variables")
                    modes[name] = np.round(solution[block.modes]).astype(bool)
            model = _Model(problem, network, _sorted(forced), modes, individual=individual)
            solution = model.lp.solve(warm_start=warm_start)
            solves, seconds = solves + 1, seconds + solution.seconds
        conflicts = {name: block.conflicts(solution)
                     for name, block in model.kind_blocks.items() if block.conflicts is not None}
        conflicts = {name: pairs for name, pairs in conflicts.items() if len(pairs)}
        if not conflicts:
            break
        # The LP found it cheaper to do what an asset cannot (a battery burning energy in losses
        # by charging and discharging at once rather than curtail): those intervals get a binary
        # mode (MILP).
        for name, pairs in conflicts.items():
            forced.setdefault(name, set()).update((int(t), int(a)) for t, a in pairs)
    model.check_slacks(solution)
    return model.result(solution, seconds, solves)


def _sorted(forced: dict[str, set[tuple[int, int]]]) -> dict[str, np.ndarray]:
    return {name: np.array(sorted(pairs), dtype=int).reshape(-1, 2)
            for name, pairs in forced.items()}


class _Model:
    """The LP of one community clearing."""

    def __init__(self, problem: CommunityProblem, network: NetworkView | None,
                 forced: dict[str, np.ndarray], fixed_modes: dict[str, np.ndarray] | None = None,
                 individual: bool = False) -> None:
        self.problem, self.network = problem, network
        lp = self.lp = LinearProgram()
        n_t, n = problem.shape
        dt = problem.dt_h

        # Members' net injections x = pv - curtailment - load + the assets' net output.
        step_lb = None if network is None else network.schedule_lower_kw
        step_ub = None if network is None else network.schedule_upper_kw
        self.x = lp.var((n_t, n), lb=-np.inf if step_lb is None else step_lb,
                        ub=np.inf if step_ub is None else step_ub)
        self.curt = lp.var((n_t, n), ub=problem.pv_p_kw, cost=problem.curtailment_eur_per_kwh * dt)
        # Assets of every kind: their variables now, their rows once the balances exist.
        self.kind_blocks = {}
        for name, table in problem.kinds.items():
            if not len(table):
                continue
            context = LPContext(
                ids=problem.ids, n_intervals=n_t,
                curtailment_eur_per_kwh=problem.curtailment_eur_per_kwh,
                wear_eur_per_kwh=problem.battery_wear_eur_per_kwh,
                forced=forced.get(name, np.zeros((0, 2), int)),
                fixed_modes=None if fixed_modes is None else fixed_modes.get(name))
            final = (problem.kinds_final_state or {}).get(name)
            self.kind_blocks[name] = asset_kind(name).lp_block(lp, table, dt, final, context)
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
        # Each asset's consumption in its owner's balance, then the kind's own rows.
        for name, block in self.kind_blocks.items():
            owner = problem.kinds[name].owner
            for draw in block.draw:
                if len(draw) == 3:  # (variables, coefficient, (interval, asset) of each)
                    var, coef, (t, asset) = draw
                    lp.coef(rows[t, owner[asset]], var, coef)
                else:
                    var, coef = draw
                    lp.coef(rows[:, owner], var, coef)
        for block in self.kind_blocks.values():
            if block.constrain is not None:
                block.constrain()

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
        assets_eur = 0.0  # valued losses and wear of the assets
        for block in self.kind_blocks.values():
            if block.cost is not None:
                assets_eur += block.cost(solution)
        welfare = -(retailer + float((curt * problem.curtailment_eur_per_kwh * dt).sum())
                    + assets_eur)
        plans = {name: block.read(solution) for name, block in self.kind_blocks.items()}
        for name, table in problem.kinds.items():
            if name not in plans:  # a kind without assets: an empty plan
                plans[name] = KindPlan(owner=table.owner, output_kw=np.zeros((n_t, 0)),
                                       state=np.zeros((n_t, 0)))
        return CommunityResult(
            schedule_kw=x, import_kw=imp, export_kw=exp,
            curtailment_kw=curt, price_eur_per_kwh=price, bus_price_eur_per_kwh=bus_price,
            dlmp_components=components, member_price_eur_per_kwh=member_price,
            member_cost_eur=member_cost, retailer_cost_eur=retailer, welfare_eur=welfare,
            solve_seconds=seconds, lp_solves=solves, lp_basis=solution.basis,
            kinds=plans,
        )
