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

import math
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

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
