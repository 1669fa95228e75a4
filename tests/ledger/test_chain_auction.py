"""The uniform-price auction cleared on chain equals lemgrid's off-chain ``clear_uniform``.

Integer units on chain (Wh, milli-euro per kWh); off chain the same book in kWh and EUR/kWh. The
volume and the price interval [L, U] (hence the k = 1/2 price) must agree exactly; every order's
fill agrees to within the on-chain rounding (marginal fills rounded down to whole Wh), and orders
off the margin agree exactly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("web3")
pytest.importorskip("vyper")
pytest.importorskip("eth_tester")

from lemgrid.errors import InputError  # noqa: E402
from lemgrid.ledger import chain, evm_market  # noqa: E402
from lemgrid.market import OrderBatch, clear_uniform  # noqa: E402

#: Largest reference book (``evm_market.reference_book(n)``) whose on-chain sort and clearing
#: fits one transaction under EIP-7825's cap, as found by ``benchmarks/chain_cost.py``.
LARGEST_BOOK_PER_TX = 2070
TX_GAS_CAP = 2**24
#: Bound of the contract the random books run on.
RANDOM_BOUND = 40
_SESSIONS = itertools.count(1)


@pytest.fixture(scope="module")
def w3():
    return chain.connect(gas_limit=60_000_000)


@pytest.fixture(scope="module")
def auction(w3):
    return evm_market.deploy_auction(w3, RANDOM_BOUND)


def _decode(order: int) -> tuple[bool, int, int]:
    return bool(order >> 128), (order >> 64) & (2**64 - 1), order & (2**64 - 1)


def off_chain(book: list[int]):
    """clear_uniform on the book in kWh and EUR/kWh: (volume Wh, L, U, price, fills in Wh)."""
    sides, prices, quantities = zip(*(_decode(o) for o in book))
    batch = OrderBatch.from_arrays(
        order_id=[f"o{i}" for i in range(len(book))],
        participant=[f"p{i}" for i in range(len(book))],
        side=["buy" if b else "sell" for b in sides],
        quantity_kwh=np.array(quantities) / 1000, price_eur_per_kwh=np.array(prices) / 1000,
        price_band_eur_per_kwh=(-1000.0, 1000.0))
    low, high, mid = (clear_uniform(batch, k=k) for k in (0.0, 1.0, 0.5))
    return (mid.volume_kwh[0] * 1000, low.price_eur_per_kwh[0] * 1000,
            high.price_eur_per_kwh[0] * 1000, mid.price_eur_per_kwh[0] * 1000,
            mid.filled_kwh * 1000)


def assert_same_clearing(book: list[int], result: evm_market.OnChainClearing) -> None:
    volume_wh, lower, upper, price, fills_wh = off_chain(book)
    assert result.volume_wh == round(volume_wh)
    assert abs(volume_wh - result.volume_wh) < 1e-6
    if result.volume_wh == 0:
        assert math.isnan(lower) and math.isnan(upper)
        assert result.fills_wh == [0] * len(book)
        return
    assert (result.lower_meur_per_kwh, result.upper_meur_per_kwh) == (round(lower), round(upper))
    assert abs(lower - round(lower)) < 1e-9 and abs(upper - round(upper)) < 1e-9
    assert (result.lower_meur_per_kwh + result.upper_meur_per_kwh) / 2 == pytest.approx(price,
                                                                                      abs=1e-9)
    for i, (order, on, off) in enumerate(zip(book, result.fills_wh, fills_wh)):
        quantity = order & (2**64 - 1)
        if round(off, 6) in (0, quantity):  # off the margin: all or nothing, exactly
            assert on == round(off), f"order {i}"
        else:  # on the margin: pro rata, rounded down to whole Wh on chain
            assert off - 1 - 1e-6 < on <= off + 1e-6, f"order {i}: {on} vs {off}"
    for buy in (True, False):
        side = [f for o, f in zip(book, result.fills_wh) if bool(o >> 128) == buy]
        assert result.volume_wh - len(side) < sum(side) <= result.volume_wh


order = st.tuples(st.booleans(), st.integers(0, 30), st.integers(1, 3000))
# Few price levels (many ties at the margin) or a wide range.
books = st.one_of(
    st.lists(order, min_size=2, max_size=RANDOM_BOUND),
    st.lists(st.tuples(st.booleans(), st.integers(0, 1_000_000), st.integers(1, 10**6)),
             min_size=2, max_size=RANDOM_BOUND))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=books, sort_on_chain=st.booleans())
def test_on_chain_clearing_equals_clear_uniform_on_random_books(auction, raw, sort_on_chain):
    book = [evm_market.encode_order("buy" if b else "sell", p, q) for b, p, q in raw]
    session = next(_SESSIONS)
    result = evm_market.clear_on_chain(auction, session.to_bytes(32, "big"), book,
                                       sort_on_chain=sort_on_chain)
    assert_same_clearing(book, result)
    stored = auction.functions.clearings(session.to_bytes(32, "big")).call()
    assert list(stored) == [len(book), result.volume_wh, result.lower_meur_per_kwh,
                      result.upper_meur_per_kwh]


def test_hand_computed_book(auction):
    # Bids 1000 Wh at 200, asks 600 Wh at 100 and 600 Wh at 150: 1000 Wh trade, the 150 ask is
    # marginal (400 of 600 Wh) and keeps a remainder, so L = U = 150.
    book = [evm_market.encode_order("buy", 200, 1000), evm_market.encode_order("sell", 100, 600),
            evm_market.encode_order("sell", 150, 600)]
    result = evm_market.clear_on_chain(auction, b"hand".ljust(32, b"\0"), book)
    assert (result.volume_wh, result.lower_meur_per_kwh, result.upper_meur_per_kwh) == (1000, 150,
                                                                                        150)
    assert result.fills_wh == [1000, 600, 400]
    assert_same_clearing(book, result)


def test_contract_refuses_bad_input(w3, auction):
    book = [evm_market.encode_order("buy", 200, 1000), evm_market.encode_order("sell", 100, 600)]
    evm_market.clear_on_chain(auction, b"once".ljust(32, b"\0"), book)
    with pytest.raises(Exception, match="already cleared"):
        evm_market.clear_on_chain(auction, b"once".ljust(32, b"\0"), book)
    unsorted = [0, 1]  # the buy before the ask: keys not increasing
    assert evm_market.merit_order(book) == [1, 0]
    with pytest.raises(Exception, match="not sorted"):
        auction.functions.clear(b"x".ljust(32, b"\0"), book, unsorted).call(
            {"from": w3.eth.accounts[0]})
    with pytest.raises(Exception, match="not sorted"):  # a position twice is no permutation
        auction.functions.clear(b"x".ljust(32, b"\0"), book, [1, 1]).call(
            {"from": w3.eth.accounts[0]})
    with pytest.raises(Exception, match="only the operator"):
        auction.functions.clear(b"y".ljust(32, b"\0"), book, []).call(
            {"from": w3.eth.accounts[1]})
    with pytest.raises(Exception, match="quantity 0"):
        auction.functions.clear(b"z".ljust(32, b"\0"), [1 << 128 | 200 << 64], []).call(
            {"from": w3.eth.accounts[0]})
    with pytest.raises(InputError, match="quantity_wh"):
        evm_market.encode_order("buy", 200, 0)
    with pytest.raises(InputError, match="side"):
        evm_market.encode_order("bid", 200, 10)


@pytest.mark.slow
def test_largest_book_one_transaction_takes(w3):
    """At the largest N whose clearing fits one transaction: equal to clear_uniform, within the
    cap, and one order more is beyond it (so N is the largest)."""
    assert LARGEST_BOOK_PER_TX > 1000
    gas = {}
    for n in (LARGEST_BOOK_PER_TX, LARGEST_BOOK_PER_TX + 1):
        contract = evm_market.deploy_auction(w3, evm_market.bound_for(n))
        book = evm_market.reference_book(n)
        result = evm_market.clear_on_chain(contract, n.to_bytes(32, "big"), book,
                                           gas=59_000_000)
        gas[n] = result.gas_used
        if n == LARGEST_BOOK_PER_TX:
            assert_same_clearing(book, result)
    assert gas[LARGEST_BOOK_PER_TX] <= TX_GAS_CAP < gas[LARGEST_BOOK_PER_TX + 1]
