"""``lemgrid clear``: clear an order book from a CSV file (issue 3)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from lemgrid.cli._app import app, console, user_errors

#: Defaults of the price band options; equal to lemgrid.market.DEFAULT_PRICE_BAND_EUR_PER_KWH
#: (not imported here, to keep ``lemgrid --help`` free of numpy and pandas).
PRICE_MIN_EUR_PER_KWH, PRICE_MAX_EUR_PER_KWH = -10.0, 10.0


class MechanismName(str, Enum):
    uniform = "uniform"
    pay_as_bid = "pay-as-bid"
    continuous = "continuous"


@app.command()
@user_errors
def clear(
    orders_csv: Path = typer.Argument(
        ..., metavar="ORDERS.csv",
        help="Orders: order_id, participant, side (buy|sell), quantity_kwh, price_eur_per_kwh; "
             "optional interval (each clears separately), bus, product, timestamp (arrival "
             "order for continuous trading; seconds or ISO 8601), valid_until."),
    mechanism: MechanismName = typer.Option(
        MechanismName.uniform, "--mechanism", "-m",
        help="uniform: one price per interval (pay-as-clear, k-rule); pay-as-bid: each matched "
             "pair at its own price; continuous: order book, trades at the resting price."),
    out: Path = typer.Option(
        Path("out/clear"), "--out", "-o",
        help="Folder for trades.csv, fills.csv and summary.json (created if needed; files of an "
             "earlier run there are replaced)."),
    k: float | None = typer.Option(
        None, "--k", min=0.0, max=1.0,
        help="Price-rule weight in [0, 1]. uniform: price = (1-k)*L + k*U on the market-clearing "
             "interval [L, U] (default 0.5, the midpoint); pay-as-bid: each pair at "
             "k*bid + (1-k)*ask (default 1, the buyer's bid). Not for continuous."),
    price_min: float = typer.Option(PRICE_MIN_EUR_PER_KWH, "--price-min",
                                    help="Lowest accepted limit price [EUR/kWh]."),
    price_max: float = typer.Option(PRICE_MAX_EUR_PER_KWH, "--price-max",
                                    help="Highest accepted limit price [EUR/kWh]."),
    ledger: Path | None = typer.Option(
        None, "--ledger",
        help="Record the signed orders, the trades, their settlement and a signed checkpoint in "
             "this verifiable ledger (created if missing; demo keys are generated for orders "
             "without signatures, in LEDGER.keys.json). Check it with `lemgrid ledger verify`."),
    market_id: str | None = typer.Option(
        None, "--market-id",
        help="Market id in the ledger (default: the CSV's name and a hash of its content, so the "
             "same book cannot be recorded twice)."),
) -> None:
    """Clear ORDERS.csv with a double auction or continuous trading.

    Writes OUT/trades.csv, OUT/fills.csv (per order) and OUT/summary.json (price, volume, welfare).

    Bad input stops with an error naming the row and field, before anything is written.
    """
    import json

    from lemgrid.market import clear as clear_orders
    from lemgrid.market import read_orders_csv

    orders = read_orders_csv(orders_csv, price_band_eur_per_kwh=(price_min, price_max))
    result = clear_orders(orders, mechanism.value, k=k)
    summary = result.summary()
    if ledger is not None:
        # Recorded before any output is written: a refused record (e.g. a replayed market id)
        # leaves neither the ledger nor the output folder half-written.
        summary["ledger"] = _record(ledger, orders_csv, orders, result, market_id)

    out.mkdir(parents=True, exist_ok=True)
    # 15 significant digits: exact for every decimal input, and 0.17 instead of 0.16999999999999998
    digits = "%.15g"
    for name, table in (("trades.csv", result.trades_frame()), ("fills.csv", result.fills_frame())):
        _write_atomic(out / name, table.to_csv(index=False, float_format=digits))
    _write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, out)


def _record(ledger: Path, orders_csv: Path, orders, result, market_id: str | None) -> dict:
    import hashlib

    from lemgrid.ledger.integration import record_clearing

    if market_id is None:
        digest = hashlib.sha256(orders_csv.read_bytes()).hexdigest()[:12]
        market_id = f"{orders_csv.stem}-{digest}"
    record = record_clearing(ledger, orders.to_frame().to_dict("records"),
                             result.trades_frame().to_dict("records"), market_id)
    return {"path": str(ledger), "market_id": market_id, "size": record.size,
            "checkpoint_seq": record.checkpoint_seq, "root": record.root_hex,
            "orders": record.orders, "trades": record.trades}


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file so an interrupted run never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _print_summary(summary: dict, out: Path) -> None:
    from rich.table import Table

    def money(value: float | None, unit: str) -> str:
        return "-" if value is None else f"{value:,.4f} {unit}"

    table = Table(title=f"lemgrid clear: {summary['mechanism']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    markets = summary["markets"]
    traded = [m for m in markets if m["volume_kwh"] > 0]
    table.add_row("orders", f"{summary['orders']:,}")
    table.add_row("markets (interval x product)", f"{len(markets):,} ({len(traded):,} traded)")
    table.add_row("trades", f"{summary['trades']:,}")
    table.add_row("volume", f"{summary['volume_kwh']:,.3f} kWh")
    table.add_row("welfare", money(summary["welfare_eur"], "EUR"))
    table.add_row("average price", money(summary["price_eur_per_kwh"], "EUR/kWh"))
    if len(traded) > 1:
        prices = [m["price_eur_per_kwh"] for m in traded]
        table.add_row("price range", f"{min(prices):.4f} .. {max(prices):.4f} EUR/kWh")
    table.add_row("unmatched buy / sell",
                  f"{summary['unmatched_buy_kwh']:,.3f} / {summary['unmatched_sell_kwh']:,.3f} kWh")
    if abs(summary["operator_surplus_eur"]) > 1e-9:
        table.add_row("operator surplus", money(summary["operator_surplus_eur"], "EUR"))
    table.add_row("price rule", summary["price_rule"])
    if "ledger" in summary:
        entry = summary["ledger"]
        table.add_row("ledger", f"{entry['path']}: {entry['orders']} orders, {entry['trades']} "
                                f"trades, checkpoint {entry['checkpoint_seq']} "
                                f"(root {entry['root'][:16]}...)")
    table.add_row("written", f"{out}/trades.csv, fills.csv, summary.json")
    console.print(table)
