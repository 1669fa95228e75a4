"""UMEI's units and periods against lemgrid's: MW against W, EUR/MWh against m€/kWh (the same
number), ISO 8601 periods against horizon intervals.

UMEI quantities are average powers over a period [MW], positive = production (net injection);
lemgrid's ledger keeps integer W and m€/kWh. A period is one delivery interval of the scenario:
its start is the scenario's interval start in UTC (a scenario in local time, such as SimBench's
Europe/Berlin, is converted; a scenario without a time zone is read as UTC).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from lemgrid.service.umei.problems import Problem

UTC = dt.timezone.utc


def quantity_mw(power_w: float) -> float:
    """A power [W] as a UMEI ``Quantity`` [MW] at its resolution of 0.001 MW (1 kW).

    UMEI's ``multipleOf: 0.001`` is checked by many JSON Schema validators as "``value / 0.001``
    is an integer in floating point", which the double nearest ``n / 1000`` fails for some ``n``
    (0.123 / 0.001 = 122.99999999999999). The value returned is the double within 4 ulps of
    ``n / 1000`` that passes that check, where one exists (for every whole kW up to 1 MW and
    most above); otherwise the double nearest ``n / 1000`` (which decimal-exact validators
    accept).
    """
    n_kw = round(power_w / 1000)
    nearest = up = down = n_kw / 1000
    candidates = [nearest]
    for _ in range(4):
        up, down = math.nextafter(up, math.inf), math.nextafter(down, -math.inf)
        candidates += [up, down]
    for c in candidates:
        q = c / 0.001
        if q == int(q) and int(q) == n_kw:
            return c + 0.0  # no -0.0
    return nearest + 0.0


def watts(quantity: float, field: str) -> int:
    """A UMEI quantity [MW] as integer W; more than 1 W of resolution is refused."""
    w = quantity * 1e6
    if abs(w - round(w)) > 1e-6 * max(1.0, abs(w)):
        raise Problem("ValidationError", f"{field}: {quantity} MW is finer than lemgrid's "
                      "resolution of 1 W (1e-6 MW)", field, quantity)
    return round(w)


def meur_per_kwh(unit_price_eur_per_mwh: float, field: str) -> int:
    """A UMEI unit price [EUR/MWh] as lemgrid's integer m€/kWh (the same number)."""
    if unit_price_eur_per_mwh != round(unit_price_eur_per_mwh):
        raise Problem("InvalidOrder", f"{field}: {unit_price_eur_per_mwh} EUR/MWh is finer than "
                      "lemgrid's price resolution of 1 EUR/MWh (1 m€/kWh)", field,
                      unit_price_eur_per_mwh)
    if abs(unit_price_eur_per_mwh) > 10**7:
        raise Problem("InvalidOrder", f"{field}: {unit_price_eur_per_mwh} EUR/MWh is outside "
                      "±1e7 EUR/MWh", field, unit_price_eur_per_mwh)
    return int(unit_price_eur_per_mwh)


class Calendar:
    """Interval starts of a scenario in UTC, and the periods they make.

    Parameters
    ----------
    starts : sequence of datetime
        Start of every horizon interval (aware, or naive = UTC).
    dt_h : float
        Interval length [h].
    """

    def __init__(self, starts: Sequence[dt.datetime], dt_h: float) -> None:
        self.starts = [s.replace(tzinfo=UTC) if s.tzinfo is None else s.astimezone(UTC)
                       for s in starts]
        self.step = dt.timedelta(hours=dt_h)
        self.index = {s: t for t, s in enumerate(self.starts)}

    def period(self, interval: int) -> tuple[dt.datetime, dt.datetime]:
        """(periodFrom, periodTo) of a horizon interval, UTC."""
        start = self.starts[interval]
        return start, start + self.step

    def interval(self, period_from: dt.datetime, period_to: dt.datetime) -> int:
        """The horizon interval a period is; raises ``InconsistentPeriods`` naming the field."""
        for name, value in (("periodFrom", period_from), ("periodTo", period_to)):
            if value.tzinfo is None:
                raise Problem("InconsistentPeriods", f"{name}: {value.isoformat()} has no time "
                              "zone; send UTC with 'Z' (or an offset)", name, value.isoformat())
        start, stop = period_from.astimezone(UTC), period_to.astimezone(UTC)
        if stop <= start:
            raise Problem("InconsistentPeriods", f"periodTo: {stop.isoformat()} is not after "
                          f"periodFrom {start.isoformat()}", "periodTo", period_to.isoformat())
        if start not in self.index:
            first, last = self.starts[0], self.starts[-1]
            raise Problem("InconsistentPeriods", f"periodFrom: {start.isoformat()} is not the "
                          f"start of a delivery interval of this market (every "
                          f"{self.step.total_seconds() / 60:g} min from {first.isoformat()} to "
                          f"{last.isoformat()})", "periodFrom", period_from.isoformat())
        if stop - start != self.step:
            raise Problem("InconsistentPeriods", f"periodTo: the period must be one delivery "
                          f"interval of {self.step.total_seconds() / 60:g} min; got "
                          f"{(stop - start).total_seconds() / 60:g} min", "periodTo",
                          period_to.isoformat())
        return self.index[start]
