"""Orders: a validated record for the API and a vectorised batch for clearing.

An order is a limit order for one product in one delivery interval: a buyer's bid or a seller's
offer of ``quantity_kwh`` (divisible) at a limit price ``price_eur_per_kwh``. Clearing works on an
:class:`OrderBatch` (one numpy array per field), which the simulator builds directly with
:meth:`OrderBatch.from_arrays` and the CLI and the service build from a CSV file or from
:class:`Order` records. Every constructor validates, and every error names the row, the field and
the offending value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from lemgrid.errors import InputError

#: Side codes in :attr:`OrderBatch.side`; the sign makes ``side * filled_kwh`` an energy balance.
BUY = 1
SELL = -1
#: Product names; :attr:`OrderBatch.product` holds the index into this tuple.
PRODUCTS = ("energy", "flex-up", "flex-down")
#: Accepted limit prices (inclusive), EUR/kWh. Wide enough for any retail or wholesale price seen
#: in Europe, including negative ones; a market narrows it with ``price_band_eur_per_kwh``.
DEFAULT_PRICE_BAND_EUR_PER_KWH = (-10.0, 10.0)
#: No price band reaches beyond +-1000 EUR/kWh (250 times the EU day-ahead price cap of
#: 4 EUR/kWh): larger numbers are unit mistakes, and welfare sums stay exact in float64.
PRICE_LIMIT_EUR_PER_KWH = 1e3
#: Largest quantity of one order [kWh]: 1 GWh in one interval, a 4 GW plant for 15 minutes, more
#: than anything connected to a distribution grid. Larger numbers (1e308) are typos, and sums of
#: them would overflow to inf and clear to nothing.
MAX_QUANTITY_KWH = 1e6
#: Delivery intervals are indices 0 .. 2**53 - 1 (exact as float64 and in JSON, and the market key
#: ``interval * 3 + product`` cannot overflow int64).
MAX_INTERVAL = 2**53 - 1
#: Columns an orders file must have, and the ones it may have.
REQUIRED_COLUMNS = ("order_id", "participant", "side", "quantity_kwh", "price_eur_per_kwh")
OPTIONAL_COLUMNS = ("interval", "bus", "product", "timestamp", "valid_until")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Order(BaseModel):
    """One limit order, as a participant submits it (API record).

    Attributes
    ----------
    order_id : int or str
        Unique identifier of the order.
    participant : str
        Who submits it (the metering point's owner).
    side : {'buy', 'sell'}
        A bid to buy or an offer to sell.
    quantity_kwh : float
        Energy to trade in the interval [kWh], > 0, divisible.
    price_eur_per_kwh : float
        Limit price [EUR/kWh]: the most a buyer pays, the least a seller accepts.
    interval : int
        Delivery interval index (e.g. the 15-minute slot); each interval clears separately.
    bus : int or str, optional
        Grid bus of the participant's connection.
    product : {'energy', 'flex-up', 'flex-down'}
        Traded product; each product clears separately.
    timestamp : datetime or float, optional
        Arrival time (datetime, naive = UTC, or seconds); sets time priority in continuous trading.
        Missing: the order's position in the submission.
    valid_until : datetime or float, optional
        End of validity (same clock as ``timestamp``); missing: valid until gate closure.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: StrictInt | NonEmptyStr
    participant: NonEmptyStr
    side: Literal["buy", "sell"]
    quantity_kwh: StrictFloat = Field(gt=0, le=MAX_QUANTITY_KWH, allow_inf_nan=False)
    price_eur_per_kwh: StrictFloat = Field(allow_inf_nan=False)
    interval: StrictInt = Field(0, ge=0, le=MAX_INTERVAL)
    bus: StrictInt | NonEmptyStr | None = None
    product: Literal["energy", "flex-up", "flex-down"] = "energy"
    timestamp: datetime | StrictFloat | None = None
    valid_until: datetime | StrictFloat | None = None


def _seconds(value: datetime | float | None, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return (value - _EPOCH).total_seconds()
    return float(value)


@dataclass(frozen=True, eq=False)
class OrderBatch:
    """Orders as parallel numpy arrays, one element per order (the clearing input).

    Build it with :meth:`from_arrays`, :meth:`from_orders`, :meth:`from_frame` or
    :func:`read_orders_csv`, which coerce and validate; the plain constructor trusts its input.

    Attributes
    ----------
    order_id : ndarray
        Unique order identifiers (int or object of str).
    participant : ndarray
        Participant of each order.
    side : ndarray of int8
        :data:`BUY` (+1) or :data:`SELL` (-1).
    quantity_kwh : ndarray of float64
        Quantity [kWh], > 0.
    price_eur_per_kwh : ndarray of float64
        Limit price [EUR/kWh].
    interval : ndarray of int64
        Delivery interval index.
    bus : ndarray or None
        Grid bus of each order, or None when no order carries one.
    product : ndarray of int8
        Index into :data:`PRODUCTS`.
    timestamp_s : ndarray of float64
        Arrival time [s]; ties are broken by position in the batch.
    valid_until_s : ndarray of float64
        End of validity [s]; ``inf`` = until gate closure.
    """

    order_id: np.ndarray
    participant: np.ndarray
    side: np.ndarray
    quantity_kwh: np.ndarray
    price_eur_per_kwh: np.ndarray
    interval: np.ndarray
    bus: np.ndarray | None
    product: np.ndarray
    timestamp_s: np.ndarray
    valid_until_s: np.ndarray

    def __len__(self) -> int:
        return int(self.quantity_kwh.shape[0])

    @property
    def is_buy(self) -> np.ndarray:
        """Boolean mask of buy orders."""
        return self.side == BUY

    @property
    def market_key(self) -> np.ndarray:
        """An int64 per order naming its market (interval, product); see `split_market_key`."""
        return self.interval * len(PRODUCTS) + self.product

    @property
    def arrival_is_row_order(self) -> bool:
        """True when timestamps never decrease along the batch (row order is arrival order)."""
        ts = self.timestamp_s
        return bool(ts.size < 2 or np.all(ts[1:] >= ts[:-1]))

    def markets(self) -> tuple[np.ndarray, np.ndarray]:
        """The markets (interval, product) present and each order's market.

        Returns
        -------
        market_key : ndarray of int64
            Ascending :attr:`market_key` of each distinct market.
        order_market : ndarray of uint16 or int64
            Index into ``market_key`` of each order (uint16 when it fits, so that sorting by
            market is a radix sort).
        """
        key = self.market_key
        if key.size == 0:
            return key, np.zeros(0, np.int64)
        low, span = key.min(), key.max() - key.min() + 1
        if span == 1:
            return key[:1], np.zeros(key.size, np.uint16)
        if span <= 4 * key.size + 1024:
            # Dense ids in O(n) without a sort: the usual case of consecutive intervals.
            present = np.bincount(key - low, minlength=span) > 0
            market_key = np.flatnonzero(present) + low
            order_market = (np.cumsum(present) - 1)[key - low]
        else:
            market_key, order_market = np.unique(key, return_inverse=True)
        dtype = np.uint16 if market_key.size <= np.iinfo(np.uint16).max + 1 else np.int64
        return market_key, order_market.astype(dtype)

    def take(self, index: np.ndarray) -> OrderBatch:
        """The orders at ``index`` (positions or boolean mask), as a new batch."""
        return OrderBatch(
            order_id=self.order_id[index],
            participant=self.participant[index],
            side=self.side[index],
            quantity_kwh=self.quantity_kwh[index],
            price_eur_per_kwh=self.price_eur_per_kwh[index],
            interval=self.interval[index],
            bus=None if self.bus is None else self.bus[index],
            product=self.product[index],
            timestamp_s=self.timestamp_s[index],
            valid_until_s=self.valid_until_s[index],
        )

    def to_frame(self) -> pd.DataFrame:
        """The batch as a table with the orders-file columns (times in seconds)."""
        frame = pd.DataFrame({
            "order_id": self.order_id,
            "participant": self.participant,
            "side": np.where(self.side == BUY, "buy", "sell"),
            "quantity_kwh": self.quantity_kwh,
            "price_eur_per_kwh": self.price_eur_per_kwh,
            "interval": self.interval,
            "product": np.asarray(PRODUCTS, dtype=object)[self.product],
            "timestamp_s": self.timestamp_s,
            "valid_until_s": self.valid_until_s,
        })
        if self.bus is not None:
            frame.insert(6, "bus", self.bus)
        return frame

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_arrays(
        cls,
        *,
        order_id: Any,
        participant: Any,
        side: Any,
        quantity_kwh: Any,
        price_eur_per_kwh: Any,
        interval: Any = 0,
        bus: Any = None,
        product: Any = "energy",
        timestamp_s: Any = None,
        valid_until_s: Any = None,
        price_band_eur_per_kwh: tuple[float, float] = DEFAULT_PRICE_BAND_EUR_PER_KWH,
        source: str = "orders",
    ) -> OrderBatch:
        """Build and validate a batch from array-likes (scalars broadcast).

        Parameters
        ----------
        order_id, participant : array_like
            Unique order ids; participant of each order.
        side : array_like
            ``'buy'``/``'sell'`` strings or :data:`BUY`/:data:`SELL` codes.
        quantity_kwh : array_like
            Quantities [kWh], finite, > 0 and at most :data:`MAX_QUANTITY_KWH`.
        price_eur_per_kwh : array_like
            Limit prices [EUR/kWh], finite and inside ``price_band_eur_per_kwh``.
        interval : array_like of int, default 0
            Delivery interval of each order, 0 .. :data:`MAX_INTERVAL`.
        bus : array_like, optional
            Grid bus of each order.
        product : array_like, default 'energy'
            Product names (see :data:`PRODUCTS`) or their indices.
        timestamp_s : array_like, optional
            Arrival times [s]; default: position in the batch.
        valid_until_s : array_like, optional
            End of validity [s]; default (or NaN): until gate closure.
        price_band_eur_per_kwh : (float, float)
            Inclusive lower and upper bound on limit prices [EUR/kWh], within
            +-:data:`PRICE_LIMIT_EUR_PER_KWH`.
        source : str
            Name used in error messages (e.g. the file name).

        Raises
        ------
        InputError
            Naming the row (1-based), the field and the value of the first bad entry.
        """
        def floats(value: Any, field: str) -> np.ndarray:
            if np.asarray(value).dtype.kind == "b":
                raise InputError(f"{source}: {field} must be numbers, got booleans")
            try:
                return np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(f"{source}: {field} must be numbers") from None

        quantity = floats(quantity_kwh, "quantity_kwh").reshape(-1)
        n = quantity.shape[0]

        def full(value: Any, field: str = "", dtype: Any = None) -> np.ndarray:
            arr = floats(value, field) if dtype is np.float64 else np.asarray(value)
            if arr.ndim == 0:
                return np.full(n, arr.item(), dtype=arr.dtype if dtype is None else dtype)
            if arr.shape != (n,):
                raise InputError(f"{source}: every field needs {n} values, got shape {arr.shape}")
            return arr

        ids = full(order_id)
        participants = full(participant)
        buses = None if bus is None else full(bus)
        prices = full(price_eur_per_kwh, "price_eur_per_kwh", np.float64)
        intervals = _integers(full(interval), "interval", source)

        def codes(value: Any, names: dict[str, int], field: str) -> np.ndarray:
            arr = np.asarray(value)
            mapped = _codes(arr.reshape(-1), names, field, source)
            return full(mapped[0] if arr.ndim == 0 else mapped)

        sides = codes(side, {"buy": BUY, "sell": SELL}, "side")
        products = codes(product, {name: i for i, name in enumerate(PRODUCTS)}, "product")
        timestamps = (np.arange(n, dtype=np.float64) if timestamp_s is None
                      else full(timestamp_s, "timestamp_s", np.float64))
        valid_until = (np.full(n, np.inf) if valid_until_s is None
                       else full(valid_until_s, "valid_until_s", np.float64))
        valid_until = np.where(np.isnan(valid_until), np.inf, valid_until)
        batch = cls(ids, participants, sides.astype(np.int8), quantity, prices, intervals, buses,
                    products.astype(np.int8), timestamps, valid_until)
        _validate(batch, price_band_eur_per_kwh, source)
        return batch

    @classmethod
    def from_orders(
        cls,
        orders: Iterable[Order | Mapping[str, Any]],
        *,
        price_band_eur_per_kwh: tuple[float, float] = DEFAULT_PRICE_BAND_EUR_PER_KWH,
        source: str = "orders",
    ) -> OrderBatch:
        """Build and validate a batch from :class:`Order` records or plain mappings.

        Missing timestamps default to the position in ``orders``; mixing timestamps given and
        missing is allowed (missing ones use the position as seconds, so give all or none).
        """
        records: list[Order] = []
        for i, item in enumerate(orders):
            if isinstance(item, Order):
                records.append(item)
                continue
            try:
                records.append(Order.model_validate(item))
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(part) for part in err["loc"]) or "order"
                got = f", got {err['input']!r}" if "input" in err and field != "order" else ""
                raise InputError(f"{source} row {i + 1}: {field}: {err['msg']}{got}") from None
        has_bus = any(r.bus is not None for r in records)
        return cls.from_arrays(
            order_id=np.array([r.order_id for r in records], dtype=object),
            participant=np.array([r.participant for r in records], dtype=object),
            side=np.array([r.side for r in records], dtype=object),
            quantity_kwh=np.array([r.quantity_kwh for r in records], dtype=np.float64),
            price_eur_per_kwh=np.array([r.price_eur_per_kwh for r in records], dtype=np.float64),
            interval=np.array([r.interval for r in records], dtype=np.int64),
            bus=np.array([r.bus for r in records], dtype=object) if has_bus else None,
            product=np.array([r.product for r in records], dtype=object),
            timestamp_s=np.array([_seconds(r.timestamp, i) for i, r in enumerate(records)]),
            valid_until_s=np.array([_seconds(r.valid_until, np.inf) for r in records]),
            price_band_eur_per_kwh=price_band_eur_per_kwh,
            source=source,
        )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        price_band_eur_per_kwh: tuple[float, float] = DEFAULT_PRICE_BAND_EUR_PER_KWH,
        source: str = "orders",
    ) -> OrderBatch:
        """Build and validate a batch from a table with the orders-file columns.

        Required columns: :data:`REQUIRED_COLUMNS`; optional: :data:`OPTIONAL_COLUMNS`
        (``timestamp`` and ``valid_until`` as numbers in seconds or ISO 8601 date-times).
        """
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(f"{source}: missing column {missing[0]!r} "
                             f"(found: {', '.join(map(str, frame.columns))})")
        unknown = [c for c in frame.columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if unknown:
            raise InputError(f"{source}: unknown column {unknown[0]!r} (allowed: "
                             f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})")
        frame = frame.reset_index(drop=True)
        for column in ("order_id", "participant", "side"):
            _require_present(frame[column], column, source)

        def times(column: str) -> np.ndarray | None:
            return _times(frame[column], column, source) if column in frame.columns else None

        return cls.from_arrays(
            order_id=frame["order_id"].to_numpy(),
            participant=frame["participant"].to_numpy(),
            side=frame["side"].to_numpy(),
            quantity_kwh=_numbers(frame["quantity_kwh"], "quantity_kwh", source),
            price_eur_per_kwh=_numbers(frame["price_eur_per_kwh"], "price_eur_per_kwh", source),
            interval=(_numbers(frame["interval"], "interval", source)
                      if "interval" in frame.columns else 0),
            bus=frame["bus"].to_numpy() if "bus" in frame.columns else None,
            product=(frame["product"].fillna("energy").to_numpy()
                     if "product" in frame.columns else "energy"),
            timestamp_s=times("timestamp"),
            valid_until_s=times("valid_until"),
            price_band_eur_per_kwh=price_band_eur_per_kwh,
            source=source,
        )


def read_orders_csv(
    path: str | Path,
    *,
    price_band_eur_per_kwh: tuple[float, float] = DEFAULT_PRICE_BAND_EUR_PER_KWH,
) -> OrderBatch:
    """Read and validate an orders file (CSV with a header row; see :meth:`OrderBatch.from_frame`).

    Error messages count rows from 1 = the first line after the header.
    """
    path = Path(path)
    text_columns = {c: str for c in ("order_id", "participant", "side", "bus", "product")}
    try:
        frame = pd.read_csv(path, dtype=text_columns, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path.name}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())  # pandas' messages end in a newline
        raise InputError(f"{path.name}: not a readable CSV file ({detail})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise InputError(f"{path.name}: contains no orders")
    return OrderBatch.from_frame(frame, price_band_eur_per_kwh=price_band_eur_per_kwh,
                                 source=path.name)


def lexsort(keys: list[np.ndarray]) -> np.ndarray:
    """Like :func:`numpy.lexsort` (last key most significant), by successive stable argsorts.

    Several times faster than ``np.lexsort`` on large arrays because boolean and 16-bit integer
    keys get numpy's radix sort.
    """
    order = np.argsort(keys[0], kind="stable")
    for key in keys[1:]:
        order = order[np.argsort(key[order], kind="stable")]
    return order


def split_market_key(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invert :attr:`OrderBatch.market_key`: return (interval, product index) arrays."""
    return np.floor_divide(key, len(PRODUCTS)), np.mod(key, len(PRODUCTS)).astype(np.int8)


# -------------------------------------------------------------------- validation helpers

def _raise_first(bad: np.ndarray, values: np.ndarray, message: str, source: str) -> None:
    """Raise an InputError for the first True entry of ``bad``, if any."""
    rows = np.flatnonzero(bad)
    if rows.size:
        i = int(rows[0])
        more = f" ({rows.size - 1} more rows like this)" if rows.size > 1 else ""
        value = values[i].item() if isinstance(values[i], np.generic) else values[i]
        raise InputError(f"{source} row {i + 1}: {message}, got {value!r}{more}")


def _require_present(series: pd.Series, field: str, source: str) -> None:
    values = series.to_numpy()
    _raise_first(pd.isna(values), values, f"{field} is missing", source)


def _numbers(series: pd.Series, field: str, source: str) -> np.ndarray:
    """A column as float64; text that is not a number, and booleans (``True`` is no quantity),
    are errors (NaN is left to validation)."""
    raw = series.to_numpy()
    if pd.api.types.is_bool_dtype(series.dtype):
        _raise_first(np.ones(raw.shape, bool), raw, f"{field} must be a number", source)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64)
    numbers = pd.to_numeric(series, errors="coerce")
    is_bool = np.fromiter((isinstance(v, bool | np.bool_) for v in raw), bool, raw.size)
    _raise_first((numbers.isna().to_numpy() & ~pd.isna(raw)) | is_bool, raw,
                 f"{field} must be a number", source)
    return numbers.to_numpy(dtype=np.float64)


def _times(series: pd.Series, field: str, source: str) -> np.ndarray:
    """Seconds from numbers or ISO 8601 date-times (naive = UTC); missing -> NaN."""
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64)
    numbers = pd.to_numeric(series, errors="coerce")
    raw = series.to_numpy()
    present = ~pd.isna(raw)
    is_number = numbers.notna().to_numpy()
    if is_number.any():  # a column of seconds: no date-times mixed in
        _raise_first(present & ~is_number, raw,
                     f"{field} must be seconds or an ISO 8601 date-time", source)
        return numbers.to_numpy(dtype=np.float64)
    stamps = pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601")
    _raise_first(stamps.isna().to_numpy() & present, raw,
                 f"{field} must be seconds or an ISO 8601 date-time", source)
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.to_numpy(dtype=np.float64, na_value=np.nan)


def _integers(values: np.ndarray, field: str, source: str) -> np.ndarray:
    """Interval indices as int64, each within 0 .. MAX_INTERVAL."""
    if values.dtype.kind == "b":
        _raise_first(np.ones(values.shape, bool), values, f"{field} must be an integer", source)
    if values.dtype.kind in "iu":
        _raise_first((values < 0) | (values > MAX_INTERVAL), values,
                     f"{field} must be within 0 .. {MAX_INTERVAL}", source)
        return values.astype(np.int64, copy=False)
    try:
        as_float = values.astype(np.float64)
    except (TypeError, ValueError):
        as_float = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    _raise_first(~np.isfinite(as_float) | (as_float != np.round(as_float)), values,
                 f"{field} must be an integer", source)
    _raise_first((as_float < 0) | (as_float > MAX_INTERVAL), values,
                 f"{field} must be within 0 .. {MAX_INTERVAL}", source)
    return as_float.astype(np.int64)


def _codes(values: np.ndarray, names: dict[str, int], field: str, source: str) -> np.ndarray:
    """Map names (case-insensitive) or valid integer codes to integer codes."""
    allowed = " or ".join(repr(name) for name in names)
    if values.dtype.kind in "iu":
        _raise_first(~np.isin(values, list(names.values())), values,
                     f"{field} must be {allowed}", source)
        return values
    # Map the few distinct values, not every row (hash-based, no string sort).
    inverse, uniques = pd.factorize(values, use_na_sentinel=False)
    unknown = np.iinfo(np.int64).min
    mapped = np.array([names.get(u.strip().lower(), unknown) if isinstance(u, str) else unknown
                       for u in uniques], dtype=np.int64)
    codes = mapped[inverse]
    _raise_first(codes == unknown, values, f"{field} must be {allowed}", source)
    return codes


def _validate(batch: OrderBatch, band: tuple[float, float], source: str) -> None:
    """Check every order; raise an InputError naming the first bad row, field and value."""
    lo, hi = band
    if not -PRICE_LIMIT_EUR_PER_KWH <= lo <= hi <= PRICE_LIMIT_EUR_PER_KWH:
        raise InputError(f"price band must have lower <= upper, both within "
                         f"+-{PRICE_LIMIT_EUR_PER_KWH:g} EUR/kWh, got ({lo}, {hi})")
    q, p = batch.quantity_kwh, batch.price_eur_per_kwh
    _raise_first(np.isnan(q), q, "quantity_kwh is missing or not a number", source)
    _raise_first(~np.isfinite(q) | (q <= 0), q, "quantity_kwh must be a finite number > 0", source)
    _raise_first(q > MAX_QUANTITY_KWH, q,
                 f"quantity_kwh must be at most {MAX_QUANTITY_KWH:g} kWh", source)
    _raise_first(np.isnan(p), p, "price_eur_per_kwh is missing or not a number", source)
    _raise_first(~np.isfinite(p), p, "price_eur_per_kwh must be finite", source)
    _raise_first((p < lo) | (p > hi), p,
                 f"price_eur_per_kwh must be within [{lo:g}, {hi:g}] EUR/kWh", source)
    _raise_first(np.isnan(batch.timestamp_s) | np.isinf(batch.timestamp_s), batch.timestamp_s,
                 "timestamp must be a finite time", source)
    _raise_first(batch.valid_until_s < batch.timestamp_s, batch.valid_until_s,
                 "valid_until must not be before timestamp", source)
    _raise_first(pd.isna(batch.order_id), batch.order_id, "order_id is missing", source)
    _raise_first(pd.isna(batch.participant), batch.participant, "participant is missing", source)
    duplicated = pd.Index(batch.order_id).duplicated()
    if duplicated.any():
        i = int(np.flatnonzero(duplicated)[0])
        first = int(np.flatnonzero(batch.order_id == batch.order_id[i])[0])
        raise InputError(f"{source} row {i + 1}: duplicate order_id {batch.order_id[i]!r} "
                         f"(first used in row {first + 1})")
