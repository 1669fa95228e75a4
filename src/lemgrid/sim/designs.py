"""One day-ahead session of each market design: from forecasts to positions and asset schedules.

Every design function takes a :class:`DayAheadSession` (one day of forecasts and the participants'
assets) and returns a :class:`SessionOutcome` with the same fields, so the runner and the
settlement treat all designs alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from lemgrid.agents.dispatch import charge_on_arrival, self_consumption_battery, to_owners
from lemgrid.agents.strategies import ZipTraders, random_limits
from lemgrid.assets.tables import Batteries, EnergyWindows, take_rows
from lemgrid.scenario.config import CommunityOptions, P2POptions
from lemgrid.settlement.bills import Positions, Prices, settle
from lemgrid.settlement.sharing import share_savings


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
    """

    scenario: object
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
    """

    battery_kw: np.ndarray
    soc_kwh: np.ndarray
    window_kw: np.ndarray
    curtailment_kw: np.ndarray

    def asset_kw(self, batteries: Batteries, windows: EnergyWindows, n: int) -> np.ndarray:
        """Batteries' output minus windows' consumption per participant (Td, N) [kW]."""
        return (to_owners(self.battery_kw, batteries.owner, n)
                - to_owners(self.window_kw, windows.owner, n))


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


# --- participants running their own assets --------------------------------------------------

def rule_schedules(load_kw: np.ndarray, pv_kw: np.ndarray, batteries: Batteries,
                   windows: EnergyWindows, dt_h: float) -> AssetPlan:
    """Assets run by the owners' rules, as without a market: EVs and shiftable loads at full
    power from the start of their window, batteries for self-consumption.

    Parameters
    ----------
    load_kw, pv_kw : ndarray (Td, N)
        Inflexible load and PV [kW].
    batteries : Batteries
    windows : EnergyWindows
        Windows relative to the first interval.
    dt_h : float
        Interval length [h].
    """
    n_t, n = load_kw.shape
    window_kw = charge_on_arrival(windows, n_t, dt_h)
    battery_kw, soc = self_consumption_battery(
        pv_kw - load_kw - to_owners(window_kw, windows.owner, n), batteries, dt_h)
    return AssetPlan(battery_kw=battery_kw, soc_kwh=soc, window_kw=window_kw,
                     curtailment_kw=np.zeros((n_t, n)))


def own_schedules(session: DayAheadSession) -> AssetPlan:
    """Assets run by their owners: by the rules, or by optimisers against the price forecast.

    An optimiser ends the day with the energy in its batteries that its rules would leave, so
    that every design and business-as-usual hold the same stored energy at every day's end."""
    from lemgrid.market.community import CommunityProblem, solve_community

    n = session.shape[1]
    dt = session.dt_h
    b, s = session.batteries, session.windows
    plan = rule_schedules(session.load_kw, session.pv_kw, b, s, dt)
    optimizer = session.agents == "optimizer"
    if optimizer.any():
        members = np.flatnonzero(optimizer)
        remap = np.full(n, -1)
        remap[members] = np.arange(len(members))
        own_b = optimizer[b.owner] if len(b) else np.zeros(0, bool)
        own_s = optimizer[s.owner] if len(s) else np.zeros(0, bool)
        opt_b = take_rows(b, own_b)
        opt_b = replace(opt_b, owner=remap[opt_b.owner])
        opt_s = take_rows(s, own_s)
        opt_s = replace(opt_s, owner=remap[opt_s.owner])
        forecast = np.clip(np.nan_to_num(session.price_forecast,
                                         nan=0.5 * (session.buyer_value + session.seller_cost)),
                           session.seller_cost, session.buyer_value)
        buy = np.repeat(forecast[:, None], len(members), axis=1)
        # Selling a kWh is worth a little less than buying one costs: fees, and no arbitrage.
        sell = buy - 0.01
        problem = CommunityProblem(
            ids=session.scenario.participants.ids[members], bus=np.zeros(len(members), int),
            dt_h=dt, load_p_kw=session.load_kw[:, members], pv_p_kw=session.pv_kw[:, members],
            batteries=opt_b, windows=opt_s, import_eur_per_kwh=buy, export_eur_per_kwh=sell,
            curtailment_eur_per_kwh=session.seller_cost,
            final_soc_kwh=plan.soc_kwh[-1, own_b] if len(plan.soc_kwh) else None)
        result = solve_community(problem, individual=True)
        plan.curtailment_kw[:, members] = result.curtailment_kw
        plan.battery_kw[:, own_b] = result.discharge_kw - result.charge_kw
        plan.soc_kwh[:, own_b] = result.soc_kwh
        plan.window_kw[:, own_s] = result.window_schedule_kw
    return plan


def net_kw(session: DayAheadSession, plan: AssetPlan) -> np.ndarray:
    """Scheduled net injection (Td, N) of a plan on the session's forecasts [kW]."""
    return (session.pv_kw - plan.curtailment_kw - session.load_kw
            + plan.asset_kw(session.batteries, session.windows, session.shape[1]))


# --- order-based designs (auctions, continuous trading) ---------------------------------------

def limit_prices(session: DayAheadSession, buying: np.ndarray) -> np.ndarray:
    """Limit price of every (interval, participant) order under each agent's strategy."""
    n_t, n = session.shape
    value, cost = session.buyer_value, session.seller_cost
    limits = np.where(buying, value, cost)  # price takers and optimisers
    zic = session.agents == "zi-c"
    if zic.any():
        draws = random_limits(value, cost, (n_t, int(zic.sum())), session.rng)
        limits[:, zic] = draws
    zip_agents = session.agents == "zip"
    if zip_agents.any():
        z = session.zip_traders
        limits[:, zip_agents] = np.where(buying[:, zip_agents], z.bid()[zip_agents],
                                         z.ask()[zip_agents])
    return limits


def order_market(session: DayAheadSession, mechanism: str) -> SessionOutcome:
    """Participants schedule their assets, then bid their net position in a double auction or
    continuous market; what does not match goes to the retailer."""
    from lemgrid.market import OrderBatch, clear

    n_t, n = session.shape
    dt = session.dt_h
    plan = own_schedules(session)
    net = net_kw(session, plan)
    energy = net * dt
    active = np.abs(energy) > 1e-9
    t_idx, n_idx = np.nonzero(active)
    buying = energy < 0
    limits = limit_prices(session, buying)
    zeros = np.zeros((n_t, n))
    bought, sold, paid = zeros.copy(), zeros.copy(), zeros.copy()
    price = np.full(n_t, np.nan)
    if len(t_idx):
        ids = session.scenario.participants.ids
        batch = OrderBatch.from_arrays(
            order_id=np.arange(len(t_idx)), participant=ids[n_idx],
            side=np.where(buying[t_idx, n_idx], "buy", "sell"),
            quantity_kwh=np.abs(energy[t_idx, n_idx]), price_eur_per_kwh=limits[t_idx, n_idx],
            interval=t_idx, timestamp_s=session.rng.permutation(len(t_idx)).astype(float),
            price_band_eur_per_kwh=(-1e3, 1e3), source="agents' orders")
        result = clear(batch, mechanism)
        filled = result.filled_kwh
        is_buy = buying[t_idx, n_idx]
        np.add.at(bought, (t_idx[is_buy], n_idx[is_buy]), filled[is_buy])
        np.add.at(sold, (t_idx[~is_buy], n_idx[~is_buy]), filled[~is_buy])
        np.add.at(paid, (t_idx, n_idx), -result.cash_flow_eur)
        traded = result.volume_kwh > 0
        price[result.market_interval[traded]] = result.price_eur_per_kwh[traded]
        if session.zip_traders is not None:
            full = np.zeros((n_t, n), bool)
            full[t_idx, n_idx] = filled >= np.abs(energy[t_idx, n_idx]) - 1e-9
            for t in range(n_t):
                session.zip_traders.learn(active[t] & buying[t], active[t] & ~buying[t], full[t],
                                          price[t])
    positions = Positions(
        scheduled_kw=net, market_bought_kwh=bought, market_sold_kwh=sold,
        local_bought_kwh=bought, local_sold_kwh=sold, market_paid_eur=paid,
        retail_import_kwh=np.maximum(-energy, 0) - bought,
        retail_export_kwh=np.maximum(energy, 0) - sold, price_eur_per_kwh=price)
    return SessionOutcome(positions, plan)


# --- community (central optimisation) -----------------------------------------------------------

def community(session: DayAheadSession, options: CommunityOptions, constrained: bool
              ) -> SessionOutcome:
    """The community manager schedules all assets; members trade what the community matches
    locally at its (locational) price and the rest with the retailer, and a benefit-sharing
    transfer leaves none of them paying more than alone (``docs/community.md``).

    The reference is business-as-usual on the session's forecasts (:func:`rule_schedules` from
    the same stored energy): the clearing must end the day with the batteries where the rules
    would leave them and may not cost the members more in total than the reference; the saving
    is then shared by :func:`lemgrid.settlement.sharing.share_savings`."""
    from lemgrid.market.community_constrained import clear_community_constrained
    from lemgrid.market.community import CommunityProblem, solve_community

    scenario = session.scenario
    prices = session.prices
    n_t, n = session.shape
    dt = session.dt_h
    reference_plan = rule_schedules(session.load_kw, session.pv_kw, session.batteries,
                                    session.windows, dt)
    reference_net = net_kw(session, reference_plan)
    reference_bill = settle(Positions.retail_only(reference_net, dt), reference_net, prices, dt)
    reference_eur = (reference_bill.cost_eur - reference_bill.fixed_eur).sum(axis=0)
    problem = CommunityProblem(
        ids=scenario.participants.ids, bus=scenario.participants.bus, dt_h=dt,
        load_p_kw=session.load_kw, pv_p_kw=session.pv_kw, batteries=session.batteries,
        windows=session.windows,
        import_eur_per_kwh=np.full(n_t, prices.retail_eur_per_kwh),
        export_eur_per_kwh=np.full(n_t, prices.export_eur_per_kwh),
        curtailment_eur_per_kwh=prices.export_eur_per_kwh if options.curtailment_eur_per_kwh
        is None else options.curtailment_eur_per_kwh,
        battery_wear_eur_per_kwh=options.battery_wear_eur_per_kwh,
        local_network_eur_per_kwh=prices.local_network_eur_per_kwh,
        levies_eur_per_kwh=prices.levies_eur_per_kwh,
        final_soc_kwh=reference_plan.soc_kwh[-1] if n_t else None,
        reference_cost_eur=float(reference_eur.sum()))
    extra: dict = {}
    if constrained:
        clearing = clear_community_constrained(
            problem, scenario.network, session.background_p_kw, session.q_kvar, scenario.limits,
            losses=options.losses, max_iterations=options.max_ac_iterations)
        result = clearing.result
        extra["unconstrained_voltage_excess_pu"] = clearing.unconstrained_validation \
            .voltage_excess_pu.max(axis=1)
        extra["unconstrained_loading_excess_percent"] = clearing.unconstrained_validation \
            .loading_excess_percent.max(axis=1, initial=0.0)
    else:
        result = solve_community(problem)
    x = result.schedule_kw
    energy = x * dt
    bought, sold = np.maximum(-energy, 0), np.maximum(energy, 0)
    # What the community matches locally, pro rata; the rest is each member's with the retailer.
    matched = np.minimum(bought.sum(axis=1), sold.sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        local_b = np.nan_to_num(bought * (matched / bought.sum(axis=1))[:, None])
        local_s = np.nan_to_num(sold * (matched / sold.sum(axis=1))[:, None])
    positions = Positions(
        scheduled_kw=x, market_bought_kwh=local_b, market_sold_kwh=local_s,
        local_bought_kwh=local_b, local_sold_kwh=local_s,
        market_paid_eur=result.member_price_eur_per_kwh * (local_b - local_s),
        retail_import_kwh=bought - local_b, retail_export_kwh=sold - local_s,
        price_eur_per_kwh=np.where(matched > 1e-9, result.price_eur_per_kwh, np.nan))
    at_prices = settle(positions, x, prices, dt)
    transfer = share_savings(reference_eur, (at_prices.cost_eur - at_prices.fixed_eur).sum(axis=0))
    positions = replace(positions, sharing_eur=np.repeat(transfer[None, :] / max(n_t, 1), n_t,
                                                         axis=0))
    plan = AssetPlan(battery_kw=result.discharge_kw - result.charge_kw, soc_kwh=result.soc_kwh,
                     window_kw=result.window_schedule_kw, curtailment_kw=result.curtailment_kw)
    return SessionOutcome(positions, plan, extra)


# --- peer to peer ---------------------------------------------------------------------------

def p2p(session: DayAheadSession, options: P2POptions) -> SessionOutcome:
    """Participants schedule their assets, then trade their net positions bilaterally (consensus
    ADMM with product differentiation); trades with the retailer peers are retail trades."""
    from lemgrid.grid.distance import electrical_distance_ohm
    from lemgrid.market.p2p import clear_p2p
    from lemgrid.market.p2p.community import GRID_BUYER, GRID_SELLER, p2p_problem

    scenario = session.scenario
    n_t, n = session.shape
    dt = session.dt_h
    plan = own_schedules(session)
    net = net_kw(session, plan)
    prices = session.prices
    problem = p2p_problem(
        scenario.participants.ids, np.maximum(-net, 0), np.maximum(net, 0),
        electrical_distance_ohm(scenario.network, scenario.participants.bus), dt,
        prices.retail_eur_per_kwh, prices.export_eur_per_kwh, options)
    result = clear_p2p(problem, options.method,
                       **({"price0_eur_per_kwh": 0.5 * (session.buyer_value + session.seller_cost),
                           "tol_primal_kwh": options.tolerance_kwh}
                          if options.method == "admm" else {}))
    trades = result.trades_table()
    index = {pid: i for i, pid in enumerate(scenario.participants.ids)}
    local = (~trades.seller.isin([GRID_SELLER, GRID_BUYER])
             & ~trades.buyer.isin([GRID_SELLER, GRID_BUYER])).to_numpy()
    trades = trades[local]
    t = trades["interval"].to_numpy(int)
    buyer = trades.buyer.map(index).to_numpy(int)
    seller = trades.seller.map(index).to_numpy(int)
    q = trades["quantity_kwh"].to_numpy()
    # Settled within what each side can honour: no one buys more than its deficit or sells more
    # than its surplus (the ADMM meets its bounds only to its tolerance), and no one pays more
    # than the retailer would charge (price plus local network charge) or gets less than the
    # feed-in tariff (preference premiums are willingness to pay, not money).
    for side, limit in ((buyer, np.maximum(-net, 0) * dt), (seller, np.maximum(net, 0) * dt)):
        total = np.zeros((n_t, n))
        np.add.at(total, (t, side), q)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(total > limit, limit / total, 1.0)
        q = q * scale[t, side]
    price = np.clip(trades["price_eur_per_kwh"].to_numpy(), session.seller_cost,
                    session.buyer_value)
    zeros = np.zeros((n_t, n))
    bought, sold, paid = zeros.copy(), zeros.copy(), zeros.copy()
    np.add.at(bought, (t, buyer), q)
    np.add.at(sold, (t, seller), q)
    np.add.at(paid, (t, buyer), q * price)
    np.add.at(paid, (t, seller), -q * price)
    # The schedule is the owners' plan; the retailer takes whatever the local trades leave of it.
    retail = net * dt - (sold - bought)
    volume = bought.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(volume > 1e-9, (paid.clip(min=0)).sum(axis=1) / volume, np.nan)
    positions = Positions(
        scheduled_kw=net, market_bought_kwh=bought, market_sold_kwh=sold,
        local_bought_kwh=bought, local_sold_kwh=sold, market_paid_eur=paid,
        retail_import_kwh=np.maximum(-retail, 0), retail_export_kwh=np.maximum(retail, 0),
        price_eur_per_kwh=price)
    return SessionOutcome(positions, plan,
                          {"p2p_iterations": np.full(n_t, float(np.max(result.iterations)))})


def retail_only_session(session: DayAheadSession) -> SessionOutcome:
    """No local market: the schedule is the owners' own plan, all of it with the retailer."""
    plan = own_schedules(session)
    return SessionOutcome(Positions.retail_only(net_kw(session, plan), session.dt_h), plan)
