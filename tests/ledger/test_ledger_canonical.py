"""Canonical JSON against the rfc8785 package, integer units and their rounding rules."""

from __future__ import annotations

import math

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from lemgrid.errors import InputError
from lemgrid.ledger.canonical import MAX_SAFE_INT, CanonicalError, canonical_bytes, parse_canonical
from lemgrid.ledger.records import leaf_data
from lemgrid.ledger.units import (
    eur_per_kwh_to_meur,
    eur_to_ueur,
    kwh_to_wh,
    kwh_to_wh_floor,
    trade_value_ueur,
)

_scalars = (st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT)
            | st.text(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=6),
                                         inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_canonical_bytes_equal_rfc8785(value):
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:  # lone surrogates: both must refuse
        with pytest.raises(CanonicalError):
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == expected
    assert parse_canonical(expected) == value


def test_canonical_refuses_values_outside_the_subset():
    with pytest.raises(CanonicalError, match=r"order\.price: floats are not allowed"):
        canonical_bytes({"price": 0.25}, "order")
    with pytest.raises(CanonicalError, match="safe range"):
        canonical_bytes({"q": 2**53})
    with pytest.raises(CanonicalError, match="ASCII"):
        canonical_bytes({"prix€": 1})
    with pytest.raises(CanonicalError, match="unsupported type"):
        canonical_bytes({"when": object()})


def test_parse_canonical_detects_non_canonical_bytes():
    assert parse_canonical(b'{"a":1,"b":[true,null]}') == {"a": 1, "b": [True, None]}
    for bad in (b'{"b":1,"a":2}', b'{"a": 1}', b'{"a":1.0}', b'{"a":"\\u0041"}', b'{"a":1,"a":2}',
                b"\xff", b"{"):
        with pytest.raises(CanonicalError):
            parse_canonical(bad)


def test_leaf_data_is_canonical_json_of_the_entry():
    payload = {"kind": "order", "quantity_wh": 1500, "note": "é\n\"x\""}
    entry = {"payload": payload, "seq": 42, "sig": "ab" * 64, "signer": "cd" * 16}
    assert leaf_data(canonical_bytes(payload), 42, "ab" * 64, "cd" * 16) == rfc8785.dumps(entry)


@pytest.mark.parametrize("e_kwh, wh", [(1.5, 1500), (0.1235, 124), (0.1225, 122), (0.0005, 0),
                                       (0.0015, 2), (-0.0025, -2), (0.3, 300), (1e-9, 0),
                                       (2.0004999, 2000)])
def test_kwh_to_wh_rounds_half_to_even_on_the_decimal_value(e_kwh, wh):
    assert kwh_to_wh(e_kwh) == wh


@pytest.mark.parametrize("e_kwh, wh", [(0.0019, 1), (0.3, 300), (1.0006, 1000), (2.9999, 2999)])
def test_kwh_to_wh_floor_never_rounds_up(e_kwh, wh):
    assert kwh_to_wh_floor(e_kwh) == wh


def test_prices_and_money():
    assert eur_per_kwh_to_meur(0.2345) == 234  # tie to even
    assert eur_per_kwh_to_meur(0.2355) == 236
    assert eur_per_kwh_to_meur(-0.05) == -50
    assert eur_to_ueur(1.2345675) == 1234568
    # 1.5 kWh at 0.25 EUR/kWh is 0.375 EUR, exactly, in micro-euro
    assert trade_value_ueur(kwh_to_wh(1.5), eur_per_kwh_to_meur(0.25)) == 375_000


@pytest.mark.parametrize("bad", [math.nan, math.inf, "abc", None, 1e20])
def test_units_refuse_bad_numbers_naming_the_field(bad):
    with pytest.raises(InputError, match="row 3: quantity_kwh"):
        kwh_to_wh(bad, "row 3: quantity_kwh")
