"""``lemgrid agent``: one participant's agent against a running market server
(:mod:`lemgrid.service.home_agent`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lemgrid.cli._app import app, console, user_errors


@app.command()
@user_errors
def agent(
    server: Annotated[str, typer.Option(metavar="URL", help="The market server, e.g. "
                                                            "http://127.0.0.1:8000")],
    key: Annotated[Path, typer.Option(help="The participant's Ed25519 key (PEM), registered "
                                           "and approved by the operator")],
    forecast: Annotated[Path, typer.Option(help="CSV with columns interval, net_kwh "
                                                "(positive: surplus to sell) [kWh]")],
    strategy: Annotated[str, typer.Option(help="price-taker or zi-c")] = "price-taker",
    buy_limit: Annotated[float, typer.Option(
        help="Highest price a buy order bids: the retail price [EUR/kWh]")] = 0.30,
    sell_limit: Annotated[float, typer.Option(
        help="Lowest price a sell order asks: the feed-in tariff [EUR/kWh]")] = 0.08,
    seed: Annotated[int, typer.Option(min=0, help="Random stream of zi-c")] = 0,
    poll_s: Annotated[float, typer.Option(min=0.05, help="How often to look for new "
                                                         "sessions [s]")] = 5.0,
    once: Annotated[bool, typer.Option(help="Bid in the sessions open now, then exit")] = False,
) -> None:
    """Trade one participant's forecast on a running server (what a home energy manager runs).

    Each open session whose interval the forecast covers gets one signed order: a sell for a
    surplus, a buy for a need, priced by the strategy.
    """
    from lemgrid.client import MarketClient
    from lemgrid.errors import InputError
    from lemgrid.ledger.identity import load_private_key
    from lemgrid.service.home_agent import HomeAgent, read_forecast

    if not server.startswith(("http://", "https://")):
        raise InputError(f"--server: {server!r} is not an http(s) URL")
    plan = read_forecast(forecast)
    client = MarketClient(server, load_private_key(key))
    r = client.get("/identities/me")
    if r.status_code != 200:
        raise InputError(f"--key: the server does not know this key as an approved identity "
                         f"({r.status_code} {r.text[:200]})")
    me = r.json()
    if me["role"] != "participant":
        raise InputError(f"--key: the key is the {me['role']} {me['participant']!r}'s, not a "
                         "participant's")
    client.participant, client.meter = me["participant"], me["meter"]
    home = HomeAgent(client, plan, strategy, buy_limit, sell_limit, seed)
    console.print(f"agent of {me['participant']} on {server}: {len(plan.interval)} forecast "
                  f"intervals, {strategy}")

    def show(order: dict) -> None:
        console.print(f"{order['side']} {order['quantity_wh']} Wh at "
                      f"{order['price_meur_per_kwh'] / 1000:.3f} EUR/kWh in interval "
                      f"{order['interval']} (ledger entry {order['seq']})")

    try:
        home.run(poll_s, rounds=1 if once else None, on_order=show)
    except KeyboardInterrupt:
        pass
    for market_id, why in home.refused.items():
        console.print(f"refused in {market_id}: {why}")
    console.print(f"{len(home.submitted)} orders submitted, {len(home.refused)} refused")
