"""KPI keys read as labels with units; numbers formatted for people; main KPIs picked by name."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lemgrid.report.tables import (
    describe_kpi,
    format_value,
    frame_table_html,
    kpi_table_html,
    main_kpis,
)


@pytest.mark.parametrize("key, group, label, unit", [
    ("peak_import_kw", "Grid", "Peak import", "kW"),
    ("losses_kwh", "Grid", "Losses", "kWh"),
    ("losses_kw_max", "Grid", "Losses max", "kW"),
    ("vm_min_pu", "Grid", "Voltage min", "p.u."),
    ("voltage_violation_intervals", "Grid", "Voltage violation", "intervals"),
    ("max_loading_percent", "Grid", "Max loading", "%"),
    ("savings_eur", "Money", "Savings", "EUR"),
    ("mean_price_eur_per_kwh", "Money", "Mean price", "EUR/kWh"),
    ("share_better_off", "Money", "Share better off", ""),
    ("local_volume_kwh", "Energy", "Local volume", "kWh"),
    ("self_sufficiency", "Energy", "Self sufficiency", ""),
    ("something_new", "Other", "Something new", ""),
])
def test_keys_are_described_by_their_unit_suffix(key, group, label, unit):
    info = describe_kpi(key)
    assert (info.group, info.label, info.unit) == (group, label, unit)


@pytest.mark.parametrize("value, key, text", [
    (1234.5678, "savings_eur", "1,234.57"),
    (-3.0, "savings_eur", "-3.00"),
    (0.4235, "share_better_off", "42.4 %"),
    (0.6, "self_sufficiency", "60.0 %"),
    (1.0123456, "vm_min_pu", "1.0123"),
    (59.133, "max_loading_percent", "59.1"),
    (12, "overload_intervals", "12"),
    (35136, "intervals", "35,136"),
    (13.0, "participants", "13"),
    (123456.7, "import_kwh", "123,457"),
    (42.648, "peak_import_kw", "42.65"),
    (0.0123, "losses_kwh", "0.0123"),
    (2.64e-16, "imbalance_short_kwh", "0"),
    (-1e-17, "budget_gap_eur", "0.00"),
    (0.0, "share_worse_off", "0.0 %"),
    (math.nan, "savings_eur", "—"),
    (None, "savings_eur", "—"),
    (True, "converged", "yes"),
    ("LV1.101 Bus 5", "vm_min_bus", "LV1.101 Bus 5"),
])
def test_values_are_formatted_by_unit(value, key, text):
    assert format_value(value, describe_kpi(key)) == text


def test_kpi_table_groups_rows_and_keeps_the_raw_keys():
    table = kpi_table_html({"community": {"peak_import_kw": 42.6, "savings_eur": 10.0,
                                          "self_sufficiency": 0.5, "<b>odd</b>": 1},
                            "none": {"peak_import_kw": 50.0}})
    assert table.index("Money") < table.index("Energy") < table.index("Grid") < \
        table.index("Other")
    for key in ("peak_import_kw", "savings_eur", "self_sufficiency"):
        assert f"<code>{key}</code>" in table
    assert "&lt;b&gt;odd&lt;/b&gt;" in table and "<b>odd</b>" not in table
    assert table.count("—") == 3   # the 'none' column lacks three KPIs


def test_frame_table_formats_numbers_by_column_unit():
    frame = pd.DataFrame({"participant": ["a", "b"], "cost_eur": [1234.5, -2.0],
                          "import_kwh": [0.5, 1500.0]})
    html = frame_table_html(frame)
    assert "1,234.50" in html and "-2.00" in html and "1,500" in html and "0.5000" in html


def test_main_kpis_takes_what_exists_and_skips_the_rest():
    table = pd.DataFrame({"design": ["a", "b"], "savings_eur": [1.0, 2.0],
                          "peak_import_kw": [3.0, 4.0], "losses_kwh": [0.1, 0.2],
                          "losses_kw_max": [1.0, 1.0], "vm_min_bus": ["x", "y"]})
    assert main_kpis(table) == ["savings_eur", "peak_import_kw", "losses_kwh"]
    assert main_kpis(pd.DataFrame({"design": ["a"]})) == []


def test_columns_with_missing_values_still_count_as_numbers():
    table = pd.DataFrame({"self_sufficiency": [0.4, None], "gini_savings": [None, None],
                          "total_savings_eur": ["1.0", "x"]}, dtype=object)
    assert main_kpis(table) == ["self_sufficiency"]
    html = frame_table_html(table)
    assert "40.0 %" in html and html.count("—") == 3


def test_headline_of_a_run_with_a_flexibility_market():
    from lemgrid.report.tables import headline_values

    kpis = {"total_savings_eur": 51.9066, "bau_total_cost_eur": 118.7796,
            "share_better_off": 12 / 13, "peak_import_kw": 57.506, "bau_peak_import_kw": 68.508,
            "violation_intervals": 3, "intervals": 96, "flex_cost_eur": 4.5,
            "flex_activated_kwh": 20.25}
    assert headline_values(kpis) == [
        ("Savings", "51.91 EUR", "of 118.78 EUR business-as-usual"),
        ("Better off", "92.3 %", ""),
        ("Peak import", "57.51 kW", "business-as-usual 68.51 kW"),
        ("Violation intervals", "3", "of 96 intervals"),
        ("Flexibility cost", "4.50 EUR", "for 20.25 kWh activated"),
    ]
    missing = headline_values({})
    assert [value for _, value, _ in missing] == ["—"] * 5
    assert "no flexibility market" in missing[-1][2]
