"""One day-ahead session of each market design: from forecasts to positions and asset schedules.

Every design function takes a :class:`DayAheadSession` (one day of forecasts and the participants'
assets) and returns a :class:`SessionOutcome` with the same fields, so the runner and the
settlement treat all designs alike.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lemgrid.agents.strategies import random_limits
from lemgrid.assets.kinds import asset_kind, kinds_to_owners, rule_order
from lemgrid.assets.tables import take_rows
from lemgrid.scenario.config import CommunityOptions, P2POptions
from lemgrid.session import AssetPlan, DayAheadSession, SessionOutcome, net_kw
from lemgrid.settlement.bills import LocalFills, Positions, Prices, local_fills, settle
from lemgrid.settlement.sharing import share_savings

if TYPE_CHECKING:
    from lemgrid.market import Mechanism
    from lemgrid.market.community import CommunityProblem, CommunityResult
    from lemgrid.market.results import ClearingResult


# --- participants running their own assets --------------------------------------------------

def rule_schedules(load_kw: np.ndarray, pv_kw: np.ndarray, kinds: dict, dt_h: float
                   ) -> AssetPlan:
    """Assets run by the owners' rules, as without a market: every kind's business-as-usual
    (``rule_dispatch``) in its ``rule_order``, each on the owner's net that the kinds before it
    leave: EVs and shiftable loads at full power from the start of their window, heat pumps by
    their thermostat, then batteries for self-consumption of what is left.

    Parameters
    ----------
    load_kw, pv_kw : ndarray (Td, N)
        Inflexible load and PV [kW].
    kinds : dict[str, column table]
        The session's assets by kind (:mod:`lemgrid.assets.kinds`), windows relative to the
        first interval.
    dt_h : float
        Interval length [h].
    """
    n_t, n = load_kw.shape
    net = pv_kw - load_kw
    plans = {}
    for name in rule_order(kinds):
        plan = asset_kind(name).rule_dispatch(kinds[name], net, dt_h)
        net = net + kinds_to_owners({name: plan}, n, n_t)
        plans[name] = plan
    return AssetPlan(curtailment_kw=np.zeros((n_t, n)),
                     kinds={name: plans[name] for name in kinds})


def own_schedules(session: DayAheadSession) -> AssetPlan:
    """Assets run by their owners: by the rules, or by optimisers against the price forecast.

    An optimiser ends the day with the state its rules would leave (the energy in its batteries,
    at least the heat in its stores), so that every design and business-as-usual hold the same
    stored energy at every day's end."""
    from lemgrid.market.community import CommunityProblem, solve_community

    n = session.shape[1]
    dt = session.dt_h
    plan = rule_schedules(session.load_kw, session.pv_kw, session.kinds, dt)
    optimizer = session.agents == "optimizer"
    if optimizer.any():
        members = np.flatnonzero(optimizer)
        remap = np.full(n, -1)
        remap[members] = np.arange(len(members))
        own_k = {name: optimizer[table.owner] if len(table) else np.zeros(0, bool)
                 for name, table in session.kinds.items()}
        opt_k = {name: replace(take_rows(table, own_k[name]),
                               owner=remap[table.owner[own_k[name]]])
                 for name, table in session.kinds.items()}
        forecast = np.clip(np.nan_to_num(session.price_forecast,
                                         nan=0.5 * (session.buyer_value + session.seller_cost)),
                           session.seller_cost, session.buyer_value)
        buy = np.repeat(forecast[:, None], len(members), axis=1)
        # Selling a kWh is worth a little less than buying one costs: fees, and no arbitrage.
        sell = buy - 0.01
        problem = CommunityProblem(
            ids=session.scenario.participants.ids[members], bus=np.zeros(len(members), int),
            dt_h=dt, load_p_kw=session.load_kw[:, members], pv_p_kw=session.pv_kw[:, members],
            import_eur_per_kwh=buy, export_eur_per_kwh=sell,
            curtailment_eur_per_kwh=session.seller_cost,
            kinds=opt_k, kinds_final_state={
                name: kp.state[-1, own_k[name]] for name, kp in plan.kinds.items()
                if len(kp.state)})
        result = solve_community(problem, individual=True)
        plan.curtailment_kw[:, members] = result.curtailment_kw
        for name, kp in result.kinds.items():
            plan.kinds[name].output_kw[:, own_k[name]] = kp.output_kw
            plan.kinds[name].state[:, own_k[name]] = kp.state
    return plan


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
        assert z is not None, "ZIP agents need the session's ZipTraders"
        limits[:, zip_agents] = np.where(buying[:, zip_agents], z.bid()[zip_agents],
                                         z.ask()[zip_agents])
    return limits


def order_market(session: DayAheadSession, mechanism: Mechanism) -> SessionOutcome:
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
    fills = LocalFills(*np.zeros((3, n_t, n)))  # nothing to trade
    price = np.full(n_t, np.nan)
    tables = {}
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
        tables = order_tables(session.time_index[t_idx], "day-ahead", ids[n_idx], is_buy,
                              np.abs(energy[t_idx, n_idx]), limits[t_idx, n_idx], result)
        fills = local_fills((n_t, n), t_idx, n_idx, np.where(is_buy, filled, 0.0),
                            np.where(is_buy, 0.0, filled), -result.cash_flow_eur)
        traded = result.volume_kwh > 0
        price[result.market_interval[traded]] = result.price_eur_per_kwh[traded]
        if session.zip_traders is not None:
            full = np.zeros((n_t, n), bool)
            full[t_idx, n_idx] = filled >= np.abs(energy[t_idx, n_idx]) - 1e-9
            for t in range(n_t):
                session.zip_traders.learn(active[t] & buying[t], active[t] & ~buying[t], full[t],
                                          price[t])
    return SessionOutcome(Positions.from_local_fills(net, fills, dt, price), plan, tables=tables)


def order_tables(interval: pd.DatetimeIndex, session: str, participant: np.ndarray,
                 is_buy: np.ndarray, quantity_kwh: np.ndarray, price_eur_per_kwh: np.ndarray,
                 result: ClearingResult) -> dict[str, pd.DataFrame]:
    """The orders an order market cleared and its trades (``orders.parquet``,
    ``trades.parquet``).

    Parameters
    ----------
    interval : DatetimeIndex
        Delivery interval of each order.
    session : str
        ``day-ahead`` or ``intraday``.
    participant, is_buy : ndarray
        Who ordered, and whether it buys (else it sells).
    quantity_kwh, price_eur_per_kwh : ndarray
        The bids: energy [kWh] and limit price [EUR/kWh].
    result : ClearingResult
        Their clearing (orders in the same order).

    Returns
    -------
    dict
        ``orders``: one row per order with ``filled_kwh`` and ``paid_eur`` (negative: received);
        ``trades``: one row per trade (``buyer``, ``seller``, ``quantity_kwh``,
        ``price_eur_per_kwh``).
    """
    sessions = pd.Categorical([session], categories=["day-ahead", "intraday"])
    orders = pd.DataFrame({
        "interval": interval, "session": sessions.repeat(len(interval)),
        "participant": participant,
        "side": pd.Categorical(np.where(is_buy, "buy", "sell"), categories=["buy", "sell"]),
        "quantity_kwh": quantity_kwh, "price_eur_per_kwh": price_eur_per_kwh,
        "filled_kwh": result.filled_kwh, "paid_eur": -result.cash_flow_eur,
    })
    buy, sell = result.trade_buy, result.trade_sell
    trades = pd.DataFrame({
        "interval": interval[buy], "session": sessions.repeat(len(buy)),
        "buyer": participant[buy], "seller": participant[sell],
        "quantity_kwh": result.trade_quantity_kwh,
        "price_eur_per_kwh": result.trade_price_eur_per_kwh,
    })
    return {"orders": orders, "trades": trades}


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

    scenario = session.scenario
    n_t = session.shape[0]
    problem, reference_eur = community_problem(session, options)
    extra: dict = {}
    tables: dict = {}
    if constrained:
        clearing = clear_community_constrained(
            problem, scenario.network, session.background_p_kw, session.q_kvar, scenario.limits,
            losses=options.losses, max_iterations=options.max_ac_iterations)
        result = clearing.result
        extra["unconstrained_voltage_excess_pu"] = clearing.unconstrained_validation \
            .voltage_excess_pu.max(axis=1)
        extra["unconstrained_loading_excess_percent"] = clearing.unconstrained_validation \
            .loading_excess_percent.max(axis=1, initial=0.0)
        extra["ac_iterations"] = np.full(n_t, float(clearing.iterations))
        assert result.bus_price_eur_per_kwh is not None and result.dlmp_components is not None
        tables["dlmp_components"] = dlmp_table(session, result.bus_price_eur_per_kwh,
                                               result.dlmp_components)
        positions = community_positions(result, reference_eur, session.prices, session.dt_h)
    else:
        # a module global on purpose: ``--via-server`` routes it through the market server
        result, positions = clear_community(problem, reference_eur, session.prices)
    plan = AssetPlan(curtailment_kw=result.curtailment_kw, kinds=result.kinds)
    return SessionOutcome(positions, plan, extra, tables)


def community_problem(session: DayAheadSession, options: CommunityOptions
                      ) -> tuple[CommunityProblem, np.ndarray]:
    """The community manager's problem of a session, and what each member would pay alone
    (:func:`community_problem_of` on the session's forecasts and assets)."""
    scenario = session.scenario
    prices = session.prices
    return community_problem_of(
        scenario.participants.ids, scenario.participants.bus, session.load_kw, session.pv_kw,
        session.kinds, prices, session.dt_h,
        prices.export_eur_per_kwh if options.curtailment_eur_per_kwh is None
        else options.curtailment_eur_per_kwh, options.battery_wear_eur_per_kwh)


def community_problem_of(ids: np.ndarray, bus: np.ndarray, load_kw: np.ndarray,
                         pv_kw: np.ndarray, kinds: dict, prices: Prices, dt_h: float,
                         curtailment_eur_per_kwh: float, battery_wear_eur_per_kwh: float
                         ) -> tuple[CommunityProblem, np.ndarray]:
    """The community manager's problem of the members' forecasts and assets, and what each
    would pay alone (N,) [EUR]: business-as-usual (:func:`rule_schedules`) with the retailer,
    fixed fees apart. The problem caps the members' total cost at that reference and asks every
    asset to end the session where the rules would leave it. The lab and the market server
    both build their problems here.

    Parameters
    ----------
    ids : ndarray of str (N,)
    bus : ndarray of int (N,)
    load_kw, pv_kw : ndarray (T, N)
        Forecasts of inflexible load and PV [kW].
    kinds : dict[str, column table]
        The members' assets by kind, windows relative to the first interval.
    prices : Prices
    dt_h : float
        Interval length [h].
    curtailment_eur_per_kwh, battery_wear_eur_per_kwh : float
        Value of curtailed energy and battery wear per kWh [EUR/kWh].
    """
    from lemgrid.market.community import CommunityProblem

    n_t = load_kw.shape[0]
    reference_plan = rule_schedules(load_kw, pv_kw, kinds, dt_h)
    reference_net = reference_plan.net_injection_kw(load_kw, pv_kw)
    reference_bill = settle(Positions.retail_only(reference_net, dt_h), reference_net, prices,
                            dt_h)
    reference_eur = (reference_bill.cost_eur - reference_bill.fixed_eur).sum(axis=0)
    problem = CommunityProblem(
        ids=ids, bus=bus, dt_h=dt_h, load_p_kw=load_kw, pv_p_kw=pv_kw,
        import_eur_per_kwh=np.full(n_t, prices.retail_eur_per_kwh),
        export_eur_per_kwh=np.full(n_t, prices.export_eur_per_kwh),
        curtailment_eur_per_kwh=curtailment_eur_per_kwh,
        battery_wear_eur_per_kwh=battery_wear_eur_per_kwh,
        local_network_eur_per_kwh=prices.local_network_eur_per_kwh,
        levies_eur_per_kwh=prices.levies_eur_per_kwh,
        reference_cost_eur=float(reference_eur.sum()), kinds=kinds,
        kinds_final_state={name: kp.state[-1] for name, kp in reference_plan.kinds.items()
                           if n_t})
    return problem, reference_eur


def clear_community(problem: CommunityProblem, reference_eur: np.ndarray, prices: Prices
                    ) -> tuple[CommunityResult, Positions]:
    """The community market of a problem without the grid's limits: the manager's LP
    (:func:`lemgrid.market.community.solve_community`) and the members' positions
    (:func:`community_positions`). The market server clears its community sessions with it.

    Parameters
    ----------
    problem : CommunityProblem
    reference_eur : ndarray (N,)
        What each member would pay alone over the session, fixed fees apart [EUR].
    prices : Prices
    """
    from lemgrid.market.community import solve_community

    result = solve_community(problem)
    return result, community_positions(result, reference_eur, prices, problem.dt_h)


def community_positions(result: CommunityResult, reference_eur: np.ndarray, prices: Prices,
                        dt_h: float) -> Positions:
    """Members' positions of a community clearing: what the community matches locally, pro
    rata, at each member's price, the rest with the retailer, and the benefit-sharing transfer
    (:func:`lemgrid.settlement.sharing.share_savings`, spread evenly over the intervals)."""
    x = result.schedule_kw
    n_t = x.shape[0]
    energy = x * dt_h
    bought, sold = np.maximum(-energy, 0), np.maximum(energy, 0)
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
    at_prices = settle(positions, x, prices, dt_h)
    transfer = share_savings(reference_eur, (at_prices.cost_eur - at_prices.fixed_eur).sum(axis=0))
    return replace(positions, sharing_eur=np.repeat(transfer[None, :] / max(n_t, 1), n_t,
                                                    axis=0))


def dlmp_table(session: DayAheadSession, dlmp_eur_per_kwh: np.ndarray,
               components: dict[str, np.ndarray]) -> pd.DataFrame:
    """Each bus's DLMP per interval and its components (energy, loss, congestion, voltage;
    they add up to the DLMP), one row per (interval, bus) [EUR/kWh]."""
    bus_names = session.scenario.network.bus_names
    n_t, n_bus = dlmp_eur_per_kwh.shape
    return pd.DataFrame({
        "interval": np.repeat(session.time_index, n_bus),
        "bus": np.tile(bus_names, n_t),
        "dlmp_eur_per_kwh": dlmp_eur_per_kwh.ravel(),
        **{f"{name}_eur_per_kwh": values.ravel() for name, values in components.items()},
    })


# --- peer to peer ---------------------------------------------------------------------------

def p2p(session: DayAheadSession, options: P2POptions) -> SessionOutcome:
    """Participants schedule their assets, then trade their net positions bilaterally (consensus
    ADMM with product differentiation); trades with the retailer peers are retail trades."""
    from lemgrid.errors import InfeasibleError, NotBuiltError
    from lemgrid.grid.distance import electrical_distance_ohm
    from lemgrid.market.p2p import clear_p2p, welfare_gap
    from lemgrid.market.p2p.community import GRID_BUYER, GRID_SELLER, p2p_problem

    if options.network != "ignore":
        raise NotBuiltError("the p2p design clears without grid limits (market.network: "
                            "ignore); the community design clears within them "
                            "(community-constrained)")
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
    extra = {"p2p_iterations": np.full(n_t, float(np.max(result.iterations))),
             "p2p_converged": result.converged.astype(float)}
    if options.method == "admm" and options.reference:
        # The central optimum of the same problem shows how near the ADMM came to it; it only
        # checks the market, so if it fails the gap is NaN, a warning says why, the market stands.
        try:
            gap = welfare_gap(result, clear_p2p(problem, "central"))
        except InfeasibleError as exc:
            warnings.warn(f"p2p reference (the central solve) unavailable: {exc}", stacklevel=2)
            gap = np.nan
        extra["p2p_gap_to_central"] = np.full(n_t, gap)
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
    settled = pd.DataFrame({"interval": session.time_index[t], "seller": trades.seller.to_numpy(),
                            "buyer": trades.buyer.to_numpy(), "quantity_kwh": q,
                            "price_eur_per_kwh": price})
    none = np.zeros_like(q)
    fills = local_fills((n_t, n), np.r_[t, t], np.r_[buyer, seller], np.r_[q, none],
                        np.r_[none, q], np.r_[q * price, -q * price])
    volume = fills.bought_kwh.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(volume > 1e-9, fills.paid_eur.clip(min=0).sum(axis=1) / volume, np.nan)
    # The schedule is the owners' plan; the retailer takes whatever the local trades leave of it.
    positions = Positions.from_local_fills(net, fills, dt, price)
    return SessionOutcome(positions, plan, extra,
                          {"p2p_trades": settled[settled.quantity_kwh > 0]})


def retail_only_session(session: DayAheadSession) -> SessionOutcome:
    """No local market: the schedule is the owners' own plan, all of it with the retailer."""
    plan = own_schedules(session)
    return SessionOutcome(Positions.retail_only(net_kw(session, plan), session.dt_h), plan)
