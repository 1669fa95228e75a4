"""The market-design registry (issue 11, item 1): a design defined here, outside the package, is
registered once and then runs in ``simulate``, ``compare`` and the command line, and its options
are checked like the built-in designs' (unknown keys name file and line)."""

from __future__ import annotations

import types
from typing import Literal

import numpy as np
import pytest
from pydantic import Field
from typer.testing import CliRunner

import lemgrid.designs
from lemgrid.errors import InputError
from lemgrid.scenario import load_scenario
from lemgrid.scenario.config import DesignOptions
from lemgrid.settlement.bills import Positions
from lemgrid.session import SessionOutcome, net_kw
from lemgrid.sim.designs import own_schedules
from lemgrid.sim.runner import compare, simulate

RURAL = "simbench:1-LV-rural1--0-sw"


class FixedPriceOptions(DesignOptions):
    design: Literal["toy-fixed-price"] = "toy-fixed-price"
    price_eur_per_kwh: float = Field(0.2, ge=0, le=1)


def clear_fixed_price(session, options: FixedPriceOptions) -> SessionOutcome:
    """Own schedules; what sellers offer and buyers need in an interval is matched pro rata at
    one fixed price, the rest with the retailer."""
    plan = own_schedules(session)
    net = net_kw(session, plan)
    energy = net * session.dt_h
    bought, sold = np.maximum(-energy, 0), np.maximum(energy, 0)
    matched = np.minimum(bought.sum(axis=1), sold.sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        local_b = np.nan_to_num(bought * (matched / bought.sum(axis=1))[:, None])
        local_s = np.nan_to_num(sold * (matched / sold.sum(axis=1))[:, None])
    price = options.price_eur_per_kwh
    positions = Positions(
        scheduled_kw=net, market_bought_kwh=local_b, market_sold_kwh=local_s,
        local_bought_kwh=local_b, local_sold_kwh=local_s,
        market_paid_eur=price * (local_b - local_s),
        retail_import_kwh=bought - local_b, retail_export_kwh=sold - local_s,
        price_eur_per_kwh=np.where(matched > 1e-9, price, np.nan))
    return SessionOutcome(positions, plan)


toy = types.SimpleNamespace(name="toy-fixed-price", summary="one fixed local price (a test)",
                            Options=FixedPriceOptions, clear_session=clear_fixed_price)


@pytest.fixture
def registered():
    lemgrid.designs.register(toy)
    yield toy
    lemgrid.designs.unregister(toy.name)


def scenario_file(tmp_path, market: str):
    path = tmp_path / "toy.yaml"
    path.write_text(f"grid: {RURAL}\nstart: 2016-06-01\ndays: 1\n"
                    "assets:\n  - {type: battery, every: 3, capacity_kwh: 5, power_kw: 2.5}\n"
                    f"market:\n{market}", encoding="utf-8")
    return path


def test_a_registered_design_runs_in_simulate_and_compare(tmp_path, registered):
    scenario = load_scenario(scenario_file(tmp_path, "  design: toy-fixed-price\n"
                                                     "  price_eur_per_kwh: 0.15\n"))
    assert isinstance(scenario.market, FixedPriceOptions)
    result = simulate(scenario)
    assert result.design == "toy-fixed-price"
    traded = result.local_volume_kwh > 1e-9
    assert traded.any()  # the rural feeder's PV sells to neighbours at noon
    np.testing.assert_allclose(result.price_eur_per_kwh[traded], 0.15)
    # Money balances: what buyers pay locally is what sellers get.
    series = result.participant_series
    np.testing.assert_allclose(result.local_bought_kwh.sum(), result.local_sold_kwh.sum())
    assert np.isfinite(series["cost_eur"]).all()

    results = compare(scenario, ["none", "toy-fixed-price", "uniform"])
    assert [r.design for r in results] == ["none", "toy-fixed-price", "uniform"]
    np.testing.assert_allclose(results[1].cost_eur, result.cost_eur)
    assert results[0].kpis["local_traded_kwh"] == 0
    assert results[1].kpis["local_traded_kwh"] > 0
    assert "toy-fixed-price" in lemgrid.designs.design_names()
    assert "| `toy-fixed-price` | one fixed local price (a test) | `price_eur_per_kwh` (0.2) |" \
        in lemgrid.designs.markdown_table()


def test_a_registered_designs_options_are_checked_with_file_and_line(tmp_path, registered):
    with pytest.raises(InputError) as err:
        load_scenario(scenario_file(tmp_path, "  design: toy-fixed-price\n"
                                              "  price_eur_per_kwh: 0.15\n  intradya: true\n"))
    assert "toy.yaml line 9: market.intradya: Extra inputs are not permitted" in str(err.value)
    with pytest.raises(InputError, match="line 8: market.price_eur_per_kwh"):
        load_scenario(scenario_file(tmp_path, "  design: toy-fixed-price\n"
                                              "  price_eur_per_kwh: 5\n"))


def test_the_command_line_compares_a_registered_design(tmp_path, registered):
    from lemgrid.cli import app

    path = scenario_file(tmp_path, "  design: none\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compare", str(path), "--designs", "none,toy-fixed-price",
                                      "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    assert (out / "comparison.csv").read_text().count("toy-fixed-price") >= 1


def test_an_unregistered_design_is_refused_by_name(tmp_path):
    scenario = load_scenario(scenario_file(tmp_path, "  design: none\n"))
    with pytest.raises(InputError, match="unknown market design 'toy-fixed-price'; choose one "
                                         "of none, uniform"):
        simulate(scenario, "toy-fixed-price")


def test_optimize_is_one_session_over_the_horizon_with_simulates_result_type(tmp_path):
    from lemgrid.sim.results import SimulationResult
    from lemgrid.sim.runner import optimize

    one_day = load_scenario(scenario_file(tmp_path, "  design: community\n"))
    # A one-day horizon is one day-ahead session either way: the same result to the cent.
    whole, daily = optimize(one_day), simulate(one_day)
    assert isinstance(whole, SimulationResult) and whole.design == "community"
    np.testing.assert_allclose(whole.cost_eur, daily.cost_eur, atol=1e-9)
    two_days = load_scenario(scenario_file(tmp_path, "  design: community\n"), days=2)
    whole = optimize(two_days)
    assert len(whole.time_index) == len(two_days.time_index) == 192
    # The manager never makes the members pay more than business-as-usual.
    assert whole.kpis["total_cost_eur"] <= whole.kpis["bau_total_cost_eur"] + 1e-6


def test_the_docs_table_of_designs_is_the_registrys():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "scenario.md").read_text("utf-8")
    assert lemgrid.designs.markdown_table() in docs, "run python -m lemgrid.designs"
