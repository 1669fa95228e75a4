"""Every call of the server into the lab, in one module, so that the operator and the lab clear
and settle with the same code and this module alone follows the lab when it is restructured.

* Clearing: :func:`lemgrid.market.clear` on an :class:`~lemgrid.market.OrderBatch` (the code of
  ``lemgrid clear`` and of the order-based designs of ``lemgrid simulate``).
* Settlement: the clearing's cash flows per participant (the lab's
  :class:`~lemgrid.market.ClearingResult`), as balanced double-entry postings in µ€.
* Scenario: :func:`lemgrid.scenario.load_scenario` for the participants and the design.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lemgrid.ledger.units import eur_per_kwh_to_meur

#: Order-based designs the server clears at gate closure (the lab's mechanisms).
MECHANISMS = ("uniform", "pay-as-bid", "continuous")


@dataclass(frozen=True)
class MarketSpec:
    """What the server takes from a scenario: its participants' meters and its design."""

    meters: frozenset[str]
    mechanism: str


def load_market(path: str) -> MarketSpec:
    """Read a scenario file: participant ids are the meters keys may be bound to."""
    from lemgrid.scenario import load_scenario

    scenario = load_scenario(path)
    design = scenario.config.market.design
    mechanism = design if design in MECHANISMS else "uniform"
    return MarketSpec(frozenset(str(i) for i in scenario.participants.ids), mechanism)


def clear_orders(orders: Sequence[Mapping], mechanism: str,
                 market_id: str) -> tuple[list[dict], dict[str, float]]:
    """Clear one session's orders with the lab's mechanism; trades in ledger units.

    Parameters
    ----------
    orders : sequence of mapping
        ``order_id``, ``participant``, ``side``, ``quantity_wh`` [Wh], ``price_meur_per_kwh``
        [m€/kWh], ``interval``, in arrival order.
    mechanism : {'uniform', 'pay-as-bid', 'continuous'}
    market_id : str
        Prefix of the trade ids.

    Returns
    -------
    trades : list of dict
        ``trade`` payloads (quantity in Wh, rounded down to the Wh, price rounded to the m€/kWh).
    cash_eur : dict
        Money each participant receives from the clearing [EUR] (the lab's cash flows, exact).
    """
    import numpy as np

    from lemgrid.market import OrderBatch, clear

    if not orders:
        return [], {}
    batch = OrderBatch.from_arrays(
        order_id=np.array([o["order_id"] for o in orders], dtype=object),
        participant=np.array([o["participant"] for o in orders], dtype=object),
        side=np.array([o["side"] for o in orders], dtype=object),
        quantity_kwh=np.array([o["quantity_wh"] / 1000 for o in orders]),
        price_eur_per_kwh=np.array([o["price_meur_per_kwh"] / 1000 for o in orders]),
        interval=np.array([o["interval"] for o in orders]),
        timestamp_s=np.arange(len(orders), dtype=float),
        source="server orders")
    result = clear(batch, mechanism)  # type: ignore[arg-type]
    cash_eur: dict[str, float] = {}
    for o, amount in zip(orders, result.cash_flow_eur):
        cash_eur[o["participant"]] = cash_eur.get(o["participant"], 0.0) + float(amount)
    trades = []
    for i, (b, s) in enumerate(zip(result.trade_buy, result.trade_sell)):
        # Down to the Wh: pro-rata rationing of tied orders splits quantities into fractions
        # of a Wh, and rounding them to nearest could fill an order beyond its quantity.
        quantity_wh = math.floor(float(result.trade_quantity_kwh[i]) * 1000 + 1e-6)
        if quantity_wh <= 0:
            continue
        buy, sell = orders[int(b)], orders[int(s)]
        trades.append({"kind": "trade", "market_id": market_id, "interval": buy["interval"],
                       "trade_id": f"{market_id}-t{i}", "buyer": buy["participant"],
                       "seller": sell["participant"], "quantity_wh": quantity_wh,
                       "price_meur_per_kwh": eur_per_kwh_to_meur(
                           float(result.trade_price_eur_per_kwh[i])),
                       "buy_order_id": buy["order_id"], "sell_order_id": sell["order_id"]})
    return trades, cash_eur


def settle(cash_eur: Mapping[str, float]) -> list[dict]:
    """Double-entry postings of a session from the lab's cash flows [µ€].

    Each participant's amount is its cash flow rounded to the µ€; what rounding leaves (at most
    half a µ€ per participant) is posted to the operator's ``rounding`` account so that the
    postings sum to zero exactly.

    Raises
    ------
    ValueError
        If the cash flows themselves do not balance (more than the rounding could explain).
    """
    amounts_ueur = {who: round(amount * 1e6) for who, amount in sorted(cash_eur.items())}
    postings: list[dict[str, str | int]] = [
        {"account": who, "amount_ueur": ueur} for who, ueur in amounts_ueur.items() if ueur]
    residual = sum(amounts_ueur.values())
    if abs(residual) > len(postings):
        raise ValueError(f"the session does not balance: cash flows sum to {residual} µ€")
    if residual:
        postings.append({"account": ROUNDING_ACCOUNT, "amount_ueur": -residual})
    return postings


#: The operator's account receiving what rounding to the µ€ leaves.
ROUNDING_ACCOUNT = "operator:rounding"
