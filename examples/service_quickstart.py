"""A first cleared session on a running `lemgrid serve` (see the README's quick start).

Registers two households with fresh keys, approves them with the operator key, opens a session
whose gate closes in three seconds, sends one signed bid and one signed offer, waits for the
server's scheduler to clear and settle it, and prints the trade, both statements and the
session's checkpoint.

Usage: python examples/service_quickstart.py [URL] [OPERATOR_KEY]
"""

from __future__ import annotations

import sys
import time

from lemgrid.client import MarketClient
from lemgrid.ledger.identity import generate_key, load_private_key

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
operator = MarketClient(url, load_private_key(sys.argv[2] if len(sys.argv) > 2 else "operator.key"))
market_id = f"quickstart-{int(time.time())}"

households = {}
for name, side, price in (("alice", "buy", 280), ("bob", "sell", 90)):
    client = MarketClient(url, generate_key())
    client.register(f"{name}-{market_id}", f"meter-{name}-{market_id}").raise_for_status()
    operator.request("POST", f"/identities/{client.participant}/approve").raise_for_status()
    households[name] = (client, side, price)

bob = households["bob"][0]
operator.request("POST", "/capabilities", {"participant": bob.participant, "interval": 0,
                                           "sellable_wh": 2000}).raise_for_status()
gate_ms = time.time_ns() // 1_000_000 + 3000
operator.request("POST", "/sessions", {"market_id": market_id, "interval": 0,
                                       "gate_ms": gate_ms}).raise_for_status()
for name, (client, side, price) in households.items():
    r = client.submit_order(market_id, order_id=f"{name}-1", side=side, quantity_wh=1500,
                            price_meur_per_kwh=price, interval=0)
    print(f"{name}: {side} 1.5 kWh at {price / 1000:.3f} EUR/kWh -> {r.status_code} {r.json()}")

while operator.get(f"/sessions/{market_id}").json()["state"] != "settled":
    time.sleep(0.5)
for trade in operator.get(f"/markets/{market_id}/trades").json():
    print(f"trade: {trade['quantity_wh']} Wh at {trade['price_meur_per_kwh'] / 1000:.3f} EUR/kWh")
for name, (client, _, _) in households.items():
    st = client.get(f"/markets/{market_id}/statements/{client.participant}").json()
    print(f"statement {name}: {st['amount_ueur'] / 1e6:+.4f} EUR")
checkpoint = operator.get("/ledger/checkpoints").json()[-1]
print(f"checkpoint at entry {checkpoint['seq']}: {checkpoint['payload']['tree_size']} entries, "
      f"root {checkpoint['payload']['root_hash']}")
