"""Energy and flexibility from the same batteries (lemgrid.market.joint): one clearing against
the sequential markets, by hand on a small case, against the lab's own sizing of battery offers
(the joint LP's room on the sequential schedule is ``battery_room``'s), and never more costly on
random days (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lemgrid.assets.tables import Batteries
from lemgrid.errors import InputError
from lemgrid.market.joint import FlexDay, clear_joint, clear_sequential


def _batteries(n: int, eta: float = 1.0, soc_initial: float = 0.0, cap: float = 4.0
               ) -> Batteries:
    def full(x):
        return np.full(n, x, dtype=float)

    return Batteries(owner=np.arange(n), name=np.array([f"b{i}" for i in range(n)]),
                     capacity_kwh=full(cap), power_kw=full(2.0), eta_charge=full(eta),
                     eta_discharge=full(eta), soc_min=full(0.0), soc_max=full(1.0),
                     soc_initial=full(soc_initial), soc_final=full(0.0))


def test_a_battery_held_for_the_dso_by_hand():
    # two hours, no load: the energy market leaves the empty battery empty; the DSO needs 2 kW
    # up in the second hour and would pay 0.5 EUR/kW/h elsewhere
    day = FlexDay(np.zeros(2), _batteries(1), 1.0, 0.30, 0.10, np.array([0.0, 2.0]),
                  np.zeros(2), 0.5, wear_eur_per_kwh=0.0)
    sequential = clear_sequential(day)
    assert sequential.energy_cost_eur == pytest.approx(0.0, abs=1e-9)
    assert sequential.up_kw == pytest.approx([0, 0]) and sequential.alternative_cost_eur == \
        pytest.approx(1.0)
    # jointly: buy 2 kWh (0.60 EUR) to hold 2 kW up for the DSO instead of 1.00 EUR elsewhere
    joint = clear_joint(day)
    assert joint.up_kw == pytest.approx([0, 2]) and joint.alternative_cost_eur == \
        pytest.approx(0.0, abs=1e-9)
    assert joint.system_cost_eur == pytest.approx(0.60)
    # and not where the alternative is cheaper than the energy it takes
    cheap = FlexDay(np.zeros(2), _batteries(1), 1.0, 0.30, 0.10, np.array([0.0, 2.0]),
                    np.zeros(2), 0.2, wear_eur_per_kwh=0.0)
    assert clear_joint(cheap).system_cost_eur == pytest.approx(0.4)


def _random_day(seed: int, n_t: int, n_b: int) -> FlexDay:
    rng = np.random.default_rng(seed)
    b = _batteries(n_b, eta=0.95, soc_initial=rng.uniform(0, 1), cap=5.0)
    return FlexDay(rng.normal(0, 3, n_t), b, 0.25, 0.30, rng.uniform(0.0, 0.3),
                   rng.uniform(0, 3, n_t) * (rng.random(n_t) < 0.5),
                   rng.uniform(0, 3, n_t) * (rng.random(n_t) < 0.5), rng.uniform(0.0, 1.0))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n_t=st.integers(1, 8), n_b=st.integers(1, 3))
def test_the_joint_clearing_never_costs_more_and_its_room_is_the_labs(seed, n_t, n_b):
    day = _random_day(seed, n_t, n_b)
    sequential, joint = clear_sequential(day), clear_joint(day)
    assert joint.system_cost_eur <= sequential.system_cost_eur + 1e-7
    assert (joint.up_kw <= day.need_up_kw + 1e-9).all()
    # on the sequential schedule, the joint LP reserves what the lab's battery_room allows
    held = clear_joint(day, fixed_battery_kw=sequential.battery_kw)
    assert held.energy_cost_eur == pytest.approx(sequential.energy_cost_eur, abs=1e-6)
    assert held.up_kw == pytest.approx(sequential.up_kw, abs=1e-6)
    assert held.down_kw == pytest.approx(sequential.down_kw, abs=1e-6)
    # every kept state of charge within limits
    b = day.batteries
    assert (joint.energy_kwh >= -1e-7).all() and (joint.energy_kwh <= b.capacity_kwh + 1e-7).all()


def test_bad_input_names_the_field():
    with pytest.raises(InputError, match="need_up_kw"):
        FlexDay(np.zeros(2), _batteries(1), 1.0, 0.3, 0.1, np.array([-1.0, 0.0]), np.zeros(2),
                0.5)
    with pytest.raises(InputError, match="net_load_kw"):
        FlexDay(np.array([np.nan, 0.0]), _batteries(1), 1.0, 0.3, 0.1, np.zeros(2),
                np.zeros(2), 0.5)
    with pytest.raises(InputError, match="sell_eur_per_kwh"):
        FlexDay(np.zeros(2), _batteries(1), 1.0, 0.1, 0.3, np.zeros(2), np.zeros(2), 0.5)
