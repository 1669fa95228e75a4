"""The DSO's long-term product (``lead_time: long-term``): what a reservation pays, by hand.

The DSO reserves every offer of its daily window and pays availability on each resource's
larger move (up or down) at each interval, at that offer's own availability price; the first
of two equal moves sets the price. Scenario: ``examples/systems/ipower.yaml`` with a
16:00-22:00 window; the offers are written by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lemgrid.dso.flexibility import DOWN, UP, FlexOffers, price_curves
from lemgrid.service.engine import GridCalendar

IPOWER = Path(__file__).resolve().parents[2] / "examples" / "systems" / "ipower.yaml"


def test_a_reservation_pays_each_resources_larger_move_at_its_own_price(tmp_path):
    path = tmp_path / "long-term.yaml"
    path.write_text(IPOWER.read_text().replace(
        "    lead_time: day-ahead\n",
        "    lead_time: long-term\n    reservation: {from: '16:00', to: '22:00'}\n"))
    day = GridCalendar(str(path)).day(0)
    dso = day.operator()
    w0, w1 = dso._reservation_window(day.session)
    assert (w1 - w0) * day.scenario.dt_h == 6
    # (participant, asset, interval, direction, kW, availability EUR/kW/h)
    rows = [(0, 0, w0, UP, 3.0, 0.005), (0, 0, w0, DOWN, 4.0, 0.009),  # down: 4 kW at 0.009
            (0, 0, w0 + 1, UP, 2.0, 0.005), (0, 0, w0 + 1, DOWN, 2.0, 0.009),  # tie: the first
            (1, 1, w0, DOWN, 1.0, 0.002),  # (asset: the kind's index, one per resource)
            (1, 1, w1, UP, 5.0, 0.1)]  # after the window: not reserved
    n = len(rows)
    participant, asset, interval, direction, kw, availability = (np.array(c) for c in zip(*rows))
    dso.offer_book = FlexOffers(
        provider=np.full(n, "agg"), participant=participant.astype(int),
        kind=np.full(n, "battery"), asset=asset.astype(int),
        bus=np.asarray(day.scenario.participants.bus)[participant.astype(int)],
        interval=interval.astype(int), direction=direction.astype(int), kw=kw.astype(float),
        price_eur_per_kwh=np.full(n, 0.1), availability_eur_per_kw_h=availability.astype(float),
        window_start=np.zeros(n, int), window_stop=np.full(n, day.stop - day.start),
        baseline_kw=np.zeros(n), min_kw=np.zeros(n), price_curve=price_curves([None] * n))
    rec = dso._reserve(day.session, day.plan, day.session.pv_kw)
    quarter_h = day.scenario.dt_h
    assert list(rec.provider) == ["agg"] and list(rec.kind) == ["reservation"]
    assert rec.shares[0] == pytest.approx({0: (4 * 0.009 + 2 * 0.005) * quarter_h,
                                           1: 1 * 0.002 * quarter_h}, abs=1e-12)
    assert float(rec.availability_eur[0]) == pytest.approx(
        (4 * 0.009 + 2 * 0.005 + 1 * 0.002) * quarter_h, abs=1e-12)
