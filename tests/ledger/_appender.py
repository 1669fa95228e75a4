"""Append driver for the crash and concurrency tests (run as a separate process).

Usage: python _appender.py LEDGER KEYSTORE PREFIX BATCHES BATCH_SIZE

Appends BATCHES batches of BATCH_SIZE signed buy orders (order ids and nonces start with PREFIX),
a checkpoint with every third batch, and after each append has returned prints one JSON line
``{"size": ..., "orders": [...]}``: the entries it acknowledged.
"""

from __future__ import annotations

import json
import sys

from lemgrid.ledger.identity import Keystore, sign_record
from lemgrid.ledger.records import order_payload
from lemgrid.ledger.store import Ledger


def main() -> None:
    path, keystore, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    batches, batch_size = int(sys.argv[4]), int(sys.argv[5])
    keys = Keystore.load(keystore)
    names = sorted(keys.participants)
    with Ledger.open(path, keys.operator) as ledger:
        print(json.dumps({"size": ledger.size, "orders": []}), flush=True)
        for b in range(batches):
            ids = [f"{prefix}-{b}-{i}" for i in range(batch_size)]
            records = []
            for i, order_id in enumerate(ids):
                participant = names[i % len(names)]
                records.append(sign_record(keys.participants[participant], order_payload(
                    log_id=ledger.log_id, market_id="m", interval=1, order_id=order_id,
                    participant=participant, meter=f"meter-{participant}", side="buy",
                    quantity_wh=100 + i, price_meur_per_kwh=200, nonce=order_id)))
            result = ledger.append(records, checkpoint=b % 3 == 2, label=f"{prefix}-{b}")
            print(json.dumps({"size": result.size, "orders": ids}), flush=True)


if __name__ == "__main__":
    main()
