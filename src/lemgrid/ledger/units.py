"""Integer units for signed ledger records, and explicit rounding from the floats users write.

Signed payloads carry energy in watt-hours (Wh), prices in milli-euro per kWh (m€/kWh, i.e.
0.1 ct/kWh) and money in micro-euro (µ€). The units fit together exactly:
``quantity_wh * price_meur_per_kwh`` is the trade value in µ€ without rounding
(1 Wh x 1 m€/kWh = 1e-3 kWh x 1e-3 €/kWh = 1e-6 €), so double-entry sums are exact integers.

Rounding rule: a float is first read at the shortest decimal that round-trips it (what a CSV file or
``repr`` shows, so ``0.1235`` is 0.1235 and not 0.12349999...), scaled by a power of ten exactly in
decimal arithmetic, then rounded to an integer: to nearest with ties to even (IEEE 754
roundTiesToEven, "banker's rounding") by default, or towards zero for :func:`kwh_to_wh_floor`,
which trade quantities use so that rounding can never over-fill an order.
"""

from __future__ import annotations

import dataclasses
import math
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from lemgrid.errors import InputError
from lemgrid.ledger.canonical import MAX_SAFE_INT


def _scaled(value: float, places: int, rounding: str, field: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{field} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{field} must be finite, got {value!r}")
    scaled = Decimal(repr(number)).scaleb(places).quantize(Decimal(1), rounding=rounding)
    result = int(scaled)
    if abs(result) > MAX_SAFE_INT:
        raise InputError(f"{field} is too large for the ledger, got {value!r}")
    return result


def kwh_to_wh(e_kwh: float, field: str = "quantity_kwh") -> int:
    """Energy in kWh to integer Wh, to nearest with ties to even.

    Parameters
    ----------
    e_kwh : float
        Energy [kWh].
    field : str
        Field name for error messages.

    Returns
    -------
    int
        Energy [Wh].
    """
    return _scaled(e_kwh, 3, ROUND_HALF_EVEN, field)


def kwh_to_wh_floor(e_kwh: float, field: str = "quantity_kwh") -> int:
    """Energy in kWh to integer Wh, rounded towards zero (fills: orders are never over-filled).

    Parameters
    ----------
    e_kwh : float
        Energy [kWh].
    field : str
        Field name for error messages.

    Returns
    -------
    int
        Energy [Wh].
    """
    return _scaled(e_kwh, 3, ROUND_DOWN, field)


def eur_per_kwh_to_meur(price_eur_per_kwh: float, field: str = "price_eur_per_kwh") -> int:
    """Price in €/kWh to integer milli-euro per kWh, to nearest with ties to even.

    Parameters
    ----------
    price_eur_per_kwh : float
        Price [€/kWh].
    field : str
        Field name for error messages.

    Returns
    -------
    int
        Price [m€/kWh].
    """
    return _scaled(price_eur_per_kwh, 3, ROUND_HALF_EVEN, field)


def eur_to_ueur(amount_eur: float, field: str = "amount_eur") -> int:
    """Money in € to integer micro-euro, to nearest with ties to even.

    Parameters
    ----------
    amount_eur : float
        Amount [€].
    field : str
        Field name for error messages.

    Returns
    -------
    int
        Amount [µ€].
    """
    return _scaled(amount_eur, 6, ROUND_HALF_EVEN, field)


def trade_value_ueur(quantity_wh: int, price_meur_per_kwh: int) -> int:
    """Exact value of a trade in micro-euro.

    Parameters
    ----------
    quantity_wh : int
        Traded energy [Wh].
    price_meur_per_kwh : int
        Price [m€/kWh].

    Returns
    -------
    int
        Value [µ€] (exact: 1 Wh x 1 m€/kWh = 1 µ€).
    """
    return quantity_wh * price_meur_per_kwh


# -- reals that must cross the wire exactly --------------------------------------------------
# A community bid carries forecasts and asset parameters that the manager's LP must see bit for
# bit as the member computed them (integer units would round them). They travel as decimal
# strings: ``repr`` of a float is its shortest round-tripping decimal, and ``float`` reads it
# back exactly, so a signature covers exactly the number the server computes with.

def decimals(values: Any) -> Any:
    """A real array (any shape) as nested lists of decimal strings; NaN as ``None``."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 0:
        return None if math.isnan(array) else repr(float(array))
    return [decimals(row) for row in array] if array.ndim > 1 else [
        None if math.isnan(x) else repr(x) for x in array.tolist()]


def reals(values: Any, field: str, *, allow_nan: bool = False, minimum: float | None = None
          ) -> np.ndarray:
    """Decimal strings (nested lists, ``None`` for NaN where ``allow_nan``) read back as an
    array; InputError naming ``field`` if one is not a finite decimal or is below ``minimum``."""
    from lemgrid.ledger.records import is_decimal

    def read(value: Any, where: str) -> Any:
        if type(value) is list:
            return [read(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if value is None and allow_nan:
            return math.nan
        if not is_decimal(value):
            raise InputError(f"{where}: expected a decimal string such as '0.25', got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise InputError(f"{where}: {value!r} is not a finite number")
        if minimum is not None and number < minimum:
            raise InputError(f"{where}: must be at least {minimum}, got {value!r}")
        return number

    numbers = read(values, field)
    try:
        return np.array(numbers, dtype=float)
    except ValueError:  # ragged nesting
        raise InputError(f"{field}: rows of unequal length") from None


def table_columns(table: Any, skip: tuple[str, ...] = ()) -> dict[str, list]:
    """A column table (a dataclass of equal-length arrays) as lists: reals as decimal strings,
    integers, booleans and strings as they are."""
    out = {}
    for f in dataclasses.fields(table):
        if f.name in skip:
            continue
        array = np.asarray(getattr(table, f.name))
        out[f.name] = decimals(array) if array.dtype.kind == "f" else array.tolist()
    return out


def table_from_columns(template: Any, columns: Any, field: str, **fixed: np.ndarray) -> Any:
    """The column table of ``template``'s type from :func:`table_columns`' lists (the
    ``fixed`` columns given as arrays); InputError naming ``field`` and the column for an
    unknown or missing column, a value of the wrong type, a negative number or rows of unequal
    length."""
    if type(columns) is not dict:
        raise InputError(f"{field}: expected an object of columns")
    names = [f.name for f in dataclasses.fields(template) if f.name not in fixed]
    unknown = sorted(set(columns) - set(names))
    missing = [n for n in names if n not in columns]
    if unknown or missing:
        raise InputError(f"{field}: " + "; ".join(
            ([f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing column(s) {', '.join(missing)}"] if missing else [])))
    values: dict[str, np.ndarray] = {}
    for name in names:
        where, kind = f"{field}.{name}", np.asarray(getattr(template, name)).dtype.kind
        raw = columns[name]
        if type(raw) is not list:
            raise InputError(f"{where}: expected a list (one value per row)")
        if kind == "f":
            values[name] = reals(raw, where, minimum=0.0)
            continue
        want: type = {"i": int, "b": bool, "U": str}.get(kind, str)
        for v in raw:
            if type(v) is not want or (type(v) is int and not 0 <= int(v) <= MAX_SAFE_INT):
                what = {int: "non-negative integers", bool: "booleans", str: "strings"}[want]
                raise InputError(f"{where}: expected {what}, got {v!r}")
        values[name] = np.array(raw, dtype=np.asarray(getattr(template, name)).dtype
                                if kind != "U" else str)
    lengths = {len(v) for v in (*values.values(), *fixed.values())}
    if len(lengths) > 1:
        raise InputError(f"{field}: columns of unequal length ({sorted(lengths)} rows)")
    return type(template)(**values, **fixed)

