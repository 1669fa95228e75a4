"""What a chain costs: gas per market session on the EVM, and EUR per participant per day.

Four ways to put a local market's session on an Ethereum-like chain, each measured as gas used
by real transactions on the in-process EVM (eth-tester with py-evm, Prague rules):

(a) anchor: lemgrid's design: orders, clearing and statements stay in the signed Merkle log and
    one transaction per session anchors the checkpoint root (``contracts/anchor.vy``);
(b) orders on chain: every order one transaction (``contracts/order_log.vy``), either the
    32-byte encoded order (the transaction's own signature authenticates it) or the whole signed
    lemgrid order record;
(c) sealed bids on chain: every order a commit and a reveal transaction
    (``contracts/sealed_bids.vy``) plus the operator's gate closure;
(d) clearing on chain: one transaction clears the session's N orders with the uniform-price
    double auction of ``contracts/uniform_auction.vy`` (the rules of lemgrid's
    ``clear_uniform``, integer units), sorting on chain (heapsort) or checking a merit order the
    operator sorted off chain. The orders come as calldata: add (b) or (c) to get them there
    trustlessly.

Gas of (a)-(c) per transaction does not depend on N, so a sample of transactions is measured and
multiplied; (d) is measured at every N. The largest N whose clearing fits one transaction is
searched for exactly (g(N) <= limit < g(N + 1), measured) under the per-transaction cap below
(since Fusaka it, not the block gas limit, bounds one transaction).

Money: EUR per participant per day = gas per session / N x sessions per day x gas price x
ETH price, one order per participant per session, 96 sessions a day at 15 minutes, 288 at 5.
The assumptions are the constants below, with their basis; the costs scale linearly in both.

Usage: python benchmarks/chain_cost.py [--quick] [--no-docs]; ``--quick`` measures N <= 300 and
skips the search for the largest N. It rewrites the gas table in docs/ledger.md (between the
markers) and prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lemgrid.ledger import chain, evm_market
from lemgrid.ledger.identity import generate_key, sign_record
from lemgrid.ledger.records import order_payload

#: Block gas limit of Ethereum mainnet: raised from 45M to 60M by validator signalling in
#: November 2025 (before that 36M from February 2025, 30M from 2021).
BLOCK_GAS_LIMIT = 60_000_000
#: Largest gas of one transaction on mainnet since the Fusaka upgrade (3 December 2025):
#: 2**24, EIP-7825. One clearing transaction must fit under it, whatever the block limit.
TX_GAS_CAP = 2**24
#: Gas price assumed [gwei]: a round figure for mainnet base fee plus tip in late 2025, when it
#: mostly stayed in the 0.1-5 gwei range. An assumption, not a measurement: costs are linear in it.
GAS_PRICE_GWEI = 2.0
#: A congested-network gas price [gwei], as common in 2020-2023, for the high case.
GAS_PRICE_HIGH_GWEI = 30.0
#: ETH price assumed [EUR]: a round figure for late 2025 (ETH traded around 2,500-4,000 EUR
#: during 2025). An assumption: costs are linear in it.
ETH_EUR = 3_000.0
#: EUR per USD, for the review's figures: a round figure for late 2025 (about 1.16 USD per EUR).
EUR_PER_USD = 0.86
#: The review's figures, after Foti and Vavalis (Applied Energy 254, 2019, 113604): about 4 USD
#: per participant for 15-minute auctions and 12.5 USD for 5-minute ones, read as per day (their
#: ratio is about that of the sessions per day, 288 / 96 = 3), at 2019 gas and ETH prices.
REVIEW_USD_PER_PARTICIPANT = {15: 4.0, 5: 12.5}
SESSIONS_PER_DAY = {15: 96, 5: 288}
#: Community sizes of the table (orders = participants per session).
TABLE_N = (10, 30, 100, 300, 1000)
QUICK_N = (10, 30, 100, 300)
#: Gas limit of the in-process test chain: room for one transaction beyond the block limit.
TEST_CHAIN_GAS_LIMIT = 2 * BLOCK_GAS_LIMIT
#: The two book sizes the search for the largest N measures first (near the answer: each
#: measurement near the cap takes minutes on py-evm).
SEARCH_START = {"sorted": (2000, 2100), "checked": (5000, 6000)}

DOC = Path(__file__).resolve().parent.parent / "docs" / "ledger.md"
BEGIN, END = "<!-- chain-cost:begin -->", "<!-- chain-cost:end -->"


def _gas(w3: Any, tx: Any) -> int:
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1:
        raise RuntimeError("a benchmark transaction failed on chain")
    return int(receipt.gasUsed)


def per_tx_gas(w3: Any, sample: int = 8) -> dict[str, float]:
    """Mean gas per transaction of (a), (b) and (c), from ``sample`` transactions each (after a
    first one, so that the contract's counters are warm as in steady operation)."""
    sender = w3.eth.accounts[0]
    anchor = chain.deploy(w3, "anchor")
    log = hashlib.sha256(b"chain-cost").digest()
    gas = []
    for i in range(sample + 1):
        root = hashlib.sha256(b"root %d" % i).digest()
        gas.append(_gas(w3, anchor.functions.anchor(log, 10 * (i + 1), root,
                                                     hashlib.sha256(root).digest())
                        .transact({"from": sender})))
    anchor_gas = sum(gas[1:]) / sample

    order_log = chain.deploy(w3, "order_log")
    book = evm_market.reference_book(sample + 1, seed=1)
    key = generate_key()
    compact, signed = [], []
    for i, order in enumerate(book):
        digest = hashlib.sha256(b"%d" % order).digest()
        compact.append(_gas(w3, order_log.functions.record(digest, order.to_bytes(32, "big"))
                            .transact({"from": sender})))
        record = sign_record(key, order_payload(
            log_id="ab" * 32, market_id="community-2025-11-30", interval=i % 96,
            order_id=f"o{i}", participant=f"household-{i:04d}", meter=f"bus-{i % 40}",
            side="buy" if i % 2 == 0 else "sell", quantity_wh=order & (2**64 - 1),
            price_meur_per_kwh=(order >> 64) & (2**64 - 1), nonce=f"n{i}"))
        payload = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":")).encode()
        signed.append(_gas(w3, order_log.functions.record(hashlib.sha256(payload).digest(),
                                                          payload)
                           .transact({"from": sender})))

    sealed = chain.deploy(w3, "sealed_bids")
    session = hashlib.sha256(b"session").digest()
    commits, reveals = [], []
    salts = [hashlib.sha256(b"salt %d" % i).digest() for i in range(len(book))]
    for order, salt in zip(book, salts):
        commitment = sealed.functions.commitment_of(order, salt, sender).call()
        commits.append(_gas(w3, sealed.functions.commit(session, commitment)
                            .transact({"from": sender})))
    gate = _gas(w3, sealed.functions.close_gate(session).transact({"from": sender}))
    for order, salt in zip(book, salts):
        reveals.append(_gas(w3, sealed.functions.reveal(session, order, salt)
                            .transact({"from": sender})))
    assert sealed.functions.revealed_count(session).call() == len(book)
    return {"anchor": anchor_gas, "order_compact": sum(compact[1:]) / sample,
            "order_signed_record": sum(signed[1:]) / sample,
            "commit": sum(commits[1:]) / sample, "reveal": sum(reveals[1:]) / sample,
            "close_gate": float(gate)}


class Clearing:
    """Gas of one on-chain clearing of the reference book, each N on a fresh contract."""

    def __init__(self, w3: Any) -> None:
        self.w3 = w3
        self.cache: dict[tuple[int, bool], int] = {}
        self.sessions = 0

    def gas(self, n: int, sort_on_chain: bool) -> int:
        if (n, sort_on_chain) not in self.cache:
            contract = evm_market.deploy_auction(self.w3, evm_market.bound_for(n))
            self.sessions += 1
            result = evm_market.clear_on_chain(
                contract, self.sessions.to_bytes(32, "big"), evm_market.reference_book(n),
                sort_on_chain=sort_on_chain, gas=TEST_CHAIN_GAS_LIMIT - 1)
            self.cache[(n, sort_on_chain)] = result.gas_used
        return self.cache[(n, sort_on_chain)]

    def largest_n(self, limit: int, sort_on_chain: bool, start: tuple[int, int]) -> int:
        """Largest N with gas(N) <= limit, by secant steps from two measured sizes, confirmed
        by measuring N and N + 1."""
        n0, n1 = start
        g0, g1 = self.gas(n0, sort_on_chain), self.gas(n1, sort_on_chain)
        for _ in range(12):
            slope = (g1 - g0) / (n1 - n0)
            guess = max(2, int(n1 + (limit - g1) / slope))
            if guess == n1:
                guess += 1 if g1 <= limit else -1
            n0, g0, n1, g1 = n1, g1, guess, self.gas(guess, sort_on_chain)
            if g1 <= limit < self.gas(n1 + 1, sort_on_chain):
                return n1
            if g1 > limit >= self.gas(n1 - 1, sort_on_chain):
                return n1 - 1
        raise RuntimeError(f"no largest N found under {limit} gas")


def eur_per_participant_day(gas_per_session: float, n: int, minutes: int,
                            gas_price_gwei: float = GAS_PRICE_GWEI) -> float:
    """EUR per participant per day for a session costing ``gas_per_session`` among n."""
    return gas_per_session / n * SESSIONS_PER_DAY[minutes] * gas_price_gwei * 1e-9 * ETH_EUR


def session_gas(tx: dict[str, float], clearing: Clearing, n: int) -> dict[str, float]:
    """Gas per session of each approach for N orders."""
    return {"a_anchor": tx["anchor"],
            "b_orders_compact": n * tx["order_compact"],
            "b_orders_signed_record": n * tx["order_signed_record"],
            "c_sealed_bids": n * (tx["commit"] + tx["reveal"]) + tx["close_gate"],
            "d_clearing_sorted_on_chain": float(clearing.gas(n, True)),
            "d_clearing_merit_order_checked": float(clearing.gas(n, False))}


LABELS = {"a_anchor": "(a) anchor the root",
          "b_orders_compact": "(b) orders on chain, 32 B each",
          "b_orders_signed_record": "(b) orders on chain, signed record",
          "c_sealed_bids": "(c) sealed bids (commit + reveal)",
          "d_clearing_sorted_on_chain": "(d) clearing, sorted on chain",
          "d_clearing_merit_order_checked": "(d) clearing, merit order checked"}


def markdown(rows: dict[int, dict[str, float]], tx: dict[str, float],
             largest: dict[str, int]) -> str:
    ns = sorted(rows)
    out = [f"Measured by `benchmarks/chain_cost.py` on the in-process EVM (py-evm, Prague rules); "
           f"one order per participant per session. Limits: block {BLOCK_GAS_LIMIT:,} gas "
           f"(mainnet since November 2025), one transaction {TX_GAS_CAP:,} gas (EIP-7825, "
           f"mainnet since 3 December 2025). Assumptions: gas {GAS_PRICE_GWEI:g} gwei "
           f"(high case {GAS_PRICE_HIGH_GWEI:g} gwei), 1 ETH = {ETH_EUR:,.0f} EUR, "
           f"1 USD = {EUR_PER_USD:g} EUR; costs are linear in gas price and ETH price.", "",
           "Gas per transaction: anchor {anchor:,.0f}; order (32 B) {order_compact:,.0f}; "
           "order (signed record) {order_signed_record:,.0f}; commit {commit:,.0f}; reveal "
           "{reveal:,.0f}; gate closure {close_gate:,.0f}.".format(**tx), "",
           "**Gas per session**", "",
           "| approach | " + " | ".join(f"N = {n:,}" for n in ns) + " |",
           "|---|" + "---:|" * len(ns)]
    for key, label in LABELS.items():
        out.append(f"| {label} | " + " | ".join(f"{rows[n][key]:,.0f}" for n in ns) + " |")
    out += ["", f"**EUR per participant per day** at {GAS_PRICE_GWEI:g} gwei "
            f"(15-minute / 5-minute sessions)", "",
            "| approach | " + " | ".join(f"N = {n:,}" for n in ns) + " |",
            "|---|" + "---:|" * len(ns)]
    for key, label in LABELS.items():
        cells = [f"{eur_per_participant_day(rows[n][key], n, 15):.3g} / "
                 f"{eur_per_participant_day(rows[n][key], n, 5):.3g}" for n in ns]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    review = " / ".join(f"{REVIEW_USD_PER_PARTICIPANT[m] * EUR_PER_USD:.3g}" for m in (15, 5))
    out.append("| review (Foti and Vavalis, 2019 prices; any N) | " + " | ".join([review] * len(ns)) + " |")
    high = GAS_PRICE_HIGH_GWEI / GAS_PRICE_GWEI
    out += ["", f"At {GAS_PRICE_HIGH_GWEI:g} gwei every cost is {high:g} times higher."]
    if largest:
        out += ["", f"**Largest N whose clearing fits one transaction** ({TX_GAS_CAP:,} gas, "
                f"EIP-7825; reference book, measured: gas(N) within the cap, gas(N + 1) beyond "
                f"it): sorted on chain {largest['sorted']:,}, merit order checked "
                f"{largest['checked']:,}. Since Fusaka this cap, not the block limit, bounds one "
                f"clearing: a {BLOCK_GAS_LIMIT // 10**6}M block holds "
                f"{BLOCK_GAS_LIMIT // TX_GAS_CAP} such transactions (the orders of (b) or (c) "
                "for a large N take several blocks)."]
    return "\n".join(out)


def write_docs(table: str) -> None:
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC}: markers {BEGIN} ... {END} missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="N <= 300 and no search for the largest N")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/ledger.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    w3 = chain.connect(gas_limit=TEST_CHAIN_GAS_LIMIT)
    tx = per_tx_gas(w3)
    clearing = Clearing(w3)
    ns = QUICK_N if args.quick else TABLE_N
    largest: dict[str, int] = {}
    if not args.quick:
        for variant, sort_on_chain in (("sorted", True), ("checked", False)):
            largest[variant] = clearing.largest_n(TX_GAS_CAP, sort_on_chain,
                                                  SEARCH_START[variant])
            print(f"largest N, clearing {variant}: {largest[variant]:,}", file=sys.stderr)
        ns = tuple(sorted(set(ns) | set(largest.values())))
    rows = {n: session_gas(tx, clearing, n) for n in ns}
    table = markdown(rows, tx, largest)
    print(table)
    if not args.no_docs:
        write_docs(table)
    n_goal = 100
    anchor_eur = eur_per_participant_day(rows[n_goal]["a_anchor"], n_goal, 15)
    review_eur = REVIEW_USD_PER_PARTICIPANT[15] * EUR_PER_USD
    result = {
        "goal": "anchoring per session (the ledger's design) costs less per participant per "
                "day than the review's on-chain market (15-minute sessions, N = 100)",
        "anchor_eur_per_participant_day_15min_n100": anchor_eur,
        "review_eur_per_participant_day_15min": review_eur,
        "met": anchor_eur < review_eur,
        "gas_per_tx": tx,
        "gas_per_session": {str(n): rows[n] for n in ns},
        "largest_n": largest,
        "block_gas_limit": BLOCK_GAS_LIMIT, "tx_gas_cap": TX_GAS_CAP,
        "gas_price_gwei": GAS_PRICE_GWEI, "eth_eur": ETH_EUR,
        "elapsed_s": time.perf_counter() - start,
        "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
    }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
