"""A market run on an EVM chain: orders, sealed bids and the clearing itself on chain.

The peers of lemgrid's ledger (where only checkpoint roots go on chain) that
``benchmarks/chain_cost.py`` measures: ``contracts/uniform_auction.vy`` clears a uniform-price
double auction by the rules of :func:`lemgrid.market.auction.clear_uniform`, in integer units
(Wh, milli-euro per kWh), either sorting the book on chain (heapsort) or checking a merit order
the operator computed off chain; ``contracts/sealed_bids.vy`` takes commit-reveal sealed bids.

Integer rules (``uniform_auction.vy``): the volume and the price interval ``[L, U]`` are those of
``clear_uniform`` exactly; a marginal level's orders are filled pro rata to their quantities and
rounded down to whole Wh, so each side's fills may sum to up to one Wh per marginal order less
than the volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lemgrid.errors import InputError
from lemgrid.ledger import chain

#: Largest price and quantity one encoded order can carry (64 bits each).
MAX_FIELD = 2**64 - 1
#: Array bound of the shipped ``uniform_auction.vy``.
DEFAULT_MAX_ORDERS = 8192


def encode_order(side: str, price_meur_per_kwh: int, quantity_wh: int) -> int:
    """One order as the contracts' uint256: bit 128 buy, bits 64..127 price, bits 0..63 quantity.

    Parameters
    ----------
    side : {'buy', 'sell'}
    price_meur_per_kwh : int
        Limit price, 0 .. 2**64 - 1 milli-euro per kWh.
    quantity_wh : int
        Quantity, 1 .. 2**64 - 1 Wh.
    """
    if side not in ("buy", "sell"):
        raise InputError(f"side must be 'buy' or 'sell', got {side!r}")
    for name, value, low in (("price_meur_per_kwh", price_meur_per_kwh, 0),
                             ("quantity_wh", quantity_wh, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_FIELD:
            raise InputError(f"{name} must be an integer in [{low}, 2**64 - 1], got {value!r}")
    return (int(side == "buy") << 128) | (price_meur_per_kwh << 64) | quantity_wh


def merit_order(orders: Sequence[int]) -> list[int]:
    """Positions of ``orders`` sorted as the contract's keys (side with asks first, price,
    quantity, position): the hint that lets the contract check instead of sort."""
    return sorted(range(len(orders)), key=lambda i: (orders[i] << 64) | i)


def bound_for(n_orders: int) -> int:
    """Array bound a contract is compiled with for books of ``n_orders``: ``n_orders`` itself.

    A Vyper array's memory is laid out for its bound, and EVM memory costs gas quadratically in
    its size, so a contract for a community of 50 is compiled for 50 orders, not 8192.
    """
    if n_orders < 2:
        raise InputError(f"n_orders must be >= 2, got {n_orders}")
    return n_orders


def auction_constants(max_orders: int) -> tuple[tuple[str, int], ...]:
    """Constants of ``uniform_auction.vy`` for an array bound: the bound and its heap depth."""
    return (("MAX_ORDERS", max_orders), ("HEAP_DEPTH", math.ceil(math.log2(max_orders)) + 1))


def deploy_auction(w3: Any, max_orders: int = DEFAULT_MAX_ORDERS) -> Any:
    """Deploy ``uniform_auction.vy`` compiled for books of at most ``max_orders`` orders."""
    return chain.deploy(w3, "uniform_auction", constants=auction_constants(max_orders))


@dataclass(frozen=True)
class OnChainClearing:
    """The result of one clearing transaction."""

    volume_wh: int
    lower_meur_per_kwh: int
    upper_meur_per_kwh: int
    fills_wh: list[int]
    gas_used: int

    @property
    def traded(self) -> bool:
        """True when anything trades (the price interval is then meaningful)."""
        return self.volume_wh > 0


def clear_on_chain(contract: Any, session: bytes, orders: Sequence[int], *,
                   sort_on_chain: bool = True, gas: int | None = None) -> OnChainClearing:
    """Send one clearing transaction and read its result from the ``Cleared`` event.

    Parameters
    ----------
    contract : web3 contract
        A deployed ``uniform_auction`` (see :func:`deploy_auction`).
    session : bytes
        32-byte session id (each is cleared once).
    orders : sequence of int
        Encoded orders (:func:`encode_order`).
    sort_on_chain : bool, default True
        Heapsort on chain; False passes :func:`merit_order` for the contract to check.
    gas : int, optional
        Gas limit of the transaction (default: the node's estimate).
    """
    if len(session) != 32:
        raise InputError(f"session must be 32 bytes, got {len(session)}")
    hint = [] if sort_on_chain else merit_order(orders)
    w3 = contract.w3
    params: dict[str, Any] = {"from": w3.eth.accounts[0]}
    if gas is not None:
        params["gas"] = gas
    tx = contract.functions.clear(session, list(orders), hint).transact(params)
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1:
        raise InputError(f"clearing transaction failed on chain (gas used {receipt.gasUsed})")
    event = contract.events.Cleared().process_receipt(receipt)[0]["args"]
    return OnChainClearing(int(event["volume_wh"]), int(event["lower_meur_per_kwh"]),
                           int(event["upper_meur_per_kwh"]), [int(f) for f in event["fills_wh"]],
                           int(receipt.gasUsed))


def reference_book(n_orders: int, seed: int = 0) -> list[int]:
    """The book ``benchmarks/chain_cost.py`` measures: ``n_orders`` encoded orders of a
    community, buys and sells alternating, buyers bidding 150-300 and sellers asking 50-200
    milli-euro per kWh, 100-3000 Wh each (a 15-minute household position), from ``seed``."""
    import random

    rng = random.Random(seed)
    book = []
    for i in range(n_orders):
        if i % 2 == 0:
            book.append(encode_order("buy", rng.randint(150, 300), rng.randint(100, 3000)))
        else:
            book.append(encode_order("sell", rng.randint(50, 200), rng.randint(100, 3000)))
    return book
