"""Ledger throughput: signed orders verified and appended per second, whole-log verification per
second, and the same orders recorded as transactions on the in-process EVM, side by side.

Goal (issue 5): append_per_s >= 10,000. The EVM peer records each order as one transaction to a
contract that refuses replays and logs the payload (``contracts/order_log.vy``), on eth-tester's
py-evm backend; it is slow, so a sample is timed and the rate extrapolated.

Usage: python benchmarks/ledger.py [N_ORDERS] [EVM_SAMPLE]; the last line printed is one JSON
object.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from lemgrid.ledger.identity import generate_key, registration_payload, sign_record
from lemgrid.ledger.records import order_payload
from lemgrid.ledger.store import Ledger
from lemgrid.ledger.verify import verify_ledger

N_PARTICIPANTS = 200
#: Orders per append (one SQLite transaction, one fsync of ~20 ms here): half a second of intake
#: at the goal rate, as an operator collecting orders would batch them.
BATCH = 5_000


def make_orders(n: int, keys: dict, log_id: str) -> list:
    """n signed orders (signing is the participants' work, not timed)."""
    names = list(keys)
    records = []
    for i in range(n):
        p = names[i % len(names)]
        side = "sell" if i % 2 else "buy"
        records.append(sign_record(keys[p], order_payload(
            log_id=log_id, market_id="bench", interval=i % 96, order_id=f"o{i}", participant=p,
            meter=f"bus-{i % 40}-{p}", side=side, quantity_wh=500 + i % 3000,
            price_meur_per_kwh=150 + i % 200, nonce=f"n{i}")))
    return records


def setup(path: Path):
    operator = generate_key()
    keys = {f"p{j:04d}": generate_key() for j in range(N_PARTICIPANTS)}
    ledger = Ledger.create(path, operator, witness_path=None)
    ledger.append_operator([registration_payload(k, p, f"bus-{j % 40}-{p}", ledger.log_id)
                            for j, (p, k) in enumerate(keys.items())])
    ledger.append_operator([{"kind": "capability", "participant": p, "interval": t,
                             "sellable_wh": 10**9, "source": "forecast"}
                            for p in keys for t in range(96)])
    return ledger, keys


def bench_ledger(n: int, workdir: Path) -> dict:
    ledger, keys = setup(workdir / "bench.db")
    records = make_orders(n, keys, ledger.log_id)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, n, BATCH):
        ledger.append(records[i:i + BATCH])
    append_s, append_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    ledger.checkpoint()
    size = ledger.size
    ledger.close()
    start, cpu = time.perf_counter(), time.process_time()
    report = verify_ledger(workdir / "bench.db", witness=None)
    verify_s, verify_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    assert report.ok, report.problem
    # CPU time (all threads) per record does not depend on what else the machine runs.
    return {"orders": n, "batch": BATCH, "append_s": append_s, "append_per_s": n / append_s,
            "append_cpu_us_per_order": append_cpu_s / n * 1e6,
            "verify_entries": size, "verify_s": verify_s, "verify_per_s": size / verify_s,
            "verify_cpu_us_per_entry": verify_cpu_s / size * 1e6, "records": records}


def bench_evm(records: list, sample: int) -> dict:
    """Record ``sample`` of the same orders as transactions on the in-process EVM."""
    try:
        from lemgrid.ledger import chain
        w3 = chain.connect()
        contract = chain.deploy(w3, "order_log")
    except Exception as exc:  # the [chain] extra is optional
        return {"evm_error": f"{type(exc).__name__}: {exc}"}
    import hashlib

    from lemgrid.ledger.identity import signing_message

    sender = w3.eth.accounts[0]
    start = time.perf_counter()
    for record in records[:sample]:
        payload = json.dumps(record.to_json(), sort_keys=True).encode()
        digest = hashlib.sha256(signing_message(record.payload)).digest()
        tx = contract.functions.record(digest, payload).transact({"from": sender})
        w3.eth.wait_for_transaction_receipt(tx)
    evm_s = time.perf_counter() - start
    assert contract.functions.count().call() == sample
    return {"evm_sample": sample, "evm_s": evm_s, "evm_tx_per_s": sample / evm_s}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    sample = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    with tempfile.TemporaryDirectory() as tmp:
        ours = bench_ledger(n, Path(tmp))
    evm = bench_evm(ours.pop("records"), sample)
    # Signature checks run on all cores: report what the machine had to offer.
    result = {**ours, **evm, "goal_append_per_s": 10_000,
              "meets_goal": ours["append_per_s"] >= 10_000, "cpus": os.cpu_count(),
              "load_avg_1min": os.getloadavg()[0]}
    if "evm_tx_per_s" in evm:
        result["ratio_vs_evm"] = ours["append_per_s"] / evm["evm_tx_per_s"]
    else:
        result["ratio_vs_evm"] = None
    print(f"ledger: {ours['append_per_s']:,.0f} signed orders appended/s, "
          f"{ours['verify_per_s']:,.0f} entries verified/s; in-process EVM: "
          f"{evm.get('evm_tx_per_s', float('nan')):,.1f} tx/s")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in result.items()}))


if __name__ == "__main__":
    main()
