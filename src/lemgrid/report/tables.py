"""KPI names read as quantities with units, numbers formatted for people, and the report's tables.

KPI keys follow the project's naming rule (units in names: ``peak_import_kw``, ``savings_eur``,
``losses_kwh``, ``vm_min_pu``), so the unit, a readable label and a group are read off the key;
keys the rules do not know still show, under "Other", with their raw value.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd

#: Key suffix -> unit shown (longest suffixes first so ``_eur_per_kwh`` wins over ``_kwh``).
_UNITS = (
    ("_eur_per_kwh", "EUR/kWh"), ("_eur", "EUR"), ("_mwh", "MWh"), ("_kwh", "kWh"),
    ("_kvar", "kvar"), ("_kw", "kW"), ("_pu", "p.u."), ("_percent", "%"), ("_pct", "%"),
    ("_intervals", "intervals"), ("_hours", "h"), ("_seconds", "s"),
)

#: Statistics that may follow the unit in a key.
_STATISTICS = ("min", "max", "mean", "sum", "total", "avg", "median", "p95", "p99")

#: Abbreviations in keys spelled out in labels.
_WORDS = {"vm": "voltage", "pv": "PV", "bau": "business-as-usual", "gini": "Gini",
          "kpi": "KPI", "dso": "DSO", "ev": "EV", "soc": "SOC", "p2p": "P2P"}

#: Group -> words that put a key in it, checked in this order (grid first: ``losses_kwh`` is a
#: grid quantity although it is energy).
_GROUPS = (
    ("Grid", ("peak", "loss", "vm_", "voltage", "overload", "loading", "violation", "congestion",
              "converge", "transformer", "trafo")),
    ("Money", ("eur", "welfare", "saving", "cost", "gini", "better_off", "worse_off", "bill",
               "surplus")),
    ("Energy", ("kwh", "self_", "sufficiency", "consumption", "volume", "traded")),
)
GROUP_ORDER = ("Money", "Energy", "Grid", "Other")

#: Dimensionless shares that read better in percent when given as fractions in [0, 1].
_SHARE_WORDS = ("share", "self_sufficiency", "self_consumption", "fraction", "ratio")


@dataclass(frozen=True)
class KpiInfo:
    """How a KPI key is shown.

    Attributes
    ----------
    key : str
        The key as in ``kpis.json``.
    group : str
        One of :data:`GROUP_ORDER`.
    label : str
        Readable name without the unit.
    unit : str
        Unit shown next to the value ('' if dimensionless).
    share : bool
        A dimensionless share: fractions in [0, 1] are shown in percent.
    """

    key: str
    group: str
    label: str
    unit: str
    share: bool


def describe_kpi(key: str) -> KpiInfo:
    """Group, label and unit of a KPI key (e.g. ``peak_import_kw`` -> Grid, "Peak import", kW)."""
    name = str(key)
    lower = name.lower()
    unit, stem = "", lower
    for suffix, shown in _UNITS:
        # The unit ends the key, or comes just before a statistic (``losses_kw_max``).
        match = re.fullmatch(rf"(.+){re.escape(suffix)}(_(?:{'|'.join(_STATISTICS)}))?", lower)
        if match:
            unit, stem = shown, match.group(1) + (match.group(2) or "")
            break
    group = next((g for g, words in _GROUPS if any(w in lower for w in words)), "Other")
    share = unit == "" and any(w in lower for w in _SHARE_WORDS)
    words = [_WORDS.get(w, w) for w in stem.split("_") if w]
    text = " ".join(words)
    label = (text[:1].upper() + text[1:]) if text else name
    return KpiInfo(key=name, group=group, label=label, unit=unit, share=share)


def format_value(value, info: KpiInfo | None = None) -> str:
    """A number as a person reads it: thousands separators, decimals by unit, '—' for missing.

    Parameters
    ----------
    value : object
        A KPI value (number, bool, string, None or NaN).
    info : KpiInfo, optional
        The KPI's description (unit and share flag choose the format).
    """
    unit = info.unit if info else ""
    if value is None or (isinstance(value, Real) and not isinstance(value, Integral)
                         and math.isnan(float(value))):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    if not isinstance(value, Real):
        return str(value)
    v = float(value)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if abs(v) < 1e-9:   # rounding noise of sums (2.6e-16 kWh of imbalance), never "-0.00"
        v = 0.0
    if info is not None and info.share and 0.0 <= v <= 1.0:
        return f"{100.0 * v:.1f} %"
    if unit == "EUR":
        return f"{v:,.2f}"
    if unit == "EUR/kWh":
        return f"{v:.4f}"
    if unit == "p.u.":
        return f"{v:.4f}"
    if unit == "%":
        return f"{v:.1f}"
    if unit in ("", "intervals") and v.is_integer():   # counts that went through a float column
        return f"{int(v):,}"
    size = abs(v)
    if size == 0:
        return "0"
    if size >= 100:
        return f"{v:,.0f}"
    if size >= 1:
        return f"{v:,.2f}"
    if size >= 1e-3:
        return f"{v:.4f}"
    return f"{v:.3g}"


def kpi_table_html(columns: Mapping[str, Mapping[str, object]]) -> str:
    """KPIs grouped by theme, one row per KPI, one value column per run.

    Parameters
    ----------
    columns : mapping of str to mapping of str to object
        Column heading (a design) -> KPI key -> value. Keys missing in a column show '—'.

    Returns
    -------
    str
        An HTML ``<table>``; each row carries the raw key so it can be found in ``kpis.json``.
    """
    keys: list[str] = []
    for values in columns.values():
        keys.extend(k for k in values if k not in keys)
    infos = [describe_kpi(k) for k in keys]
    heads = "".join(f"<th class='num'>{html.escape(str(c))}</th>" for c in columns)
    rows = [f"<thead><tr><th>KPI</th><th>unit</th>{heads}<th>key</th></tr></thead><tbody>"]
    for group in GROUP_ORDER:
        members = [i for i in infos if i.group == group]
        if not members:
            continue
        rows.append(f"<tr class='group'><th colspan='{len(columns) + 3}'>{group}</th></tr>")
        for info in members:
            unit = "%" if info.share else info.unit
            cells = "".join(
                f"<td class='num'>{html.escape(format_value(values.get(info.key), info))}</td>"
                for values in columns.values())
            rows.append(f"<tr><td>{html.escape(info.label)}</td><td>{html.escape(unit)}</td>"
                        f"{cells}<td><code>{html.escape(info.key)}</code></td></tr>")
    rows.append("</tbody>")
    return "<table class='kpis'>" + "".join(rows) + "</table>"


def frame_table_html(frame: pd.DataFrame) -> str:
    """A data frame as an HTML table, numbers formatted by the unit in each column's name."""
    # Formatted here rather than by to_html's formatters, which pandas skips for object columns
    # (KPI columns holding None, e.g. an undefined Gini) when index=False.
    text = pd.DataFrame({c: [format_value(v, describe_kpi(c)) for v in frame[c]]
                         for c in frame.columns}, columns=frame.columns)
    return text.to_html(index=False, classes="data", border=0, escape=True)


#: The KPIs that decide between designs: for each, patterns of keys tried in order.
MAIN_KPI_PATTERNS = (
    (r"^(total_|community_)?savings(_total)?_eur$", r"savings.*_eur$"),
    (r"^share_better_off", r"better_off"),
    (r"^(community_)?self_sufficiency", r"self_sufficiency"),
    (r"^(social_)?welfare", r"welfare"),
    (r"^peak_import_kw$", r"peak_import"),
    (r"^losses_kwh$", r"losses.*kwh", r"losses"),
    (r"^voltage_violation_intervals$", r"violation"),
    (r"^overload_intervals$", r"overload"),
)


def _is_numeric(column: pd.Series) -> bool:
    """Numbers, possibly with missing values (None makes pandas use the object dtype)."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    present = column.notna()
    converted = pd.to_numeric(column[present], errors="coerce")
    return bool(present.any()) and bool(converted.notna().all()) and \
        not column[present].map(lambda v: isinstance(v, (bool, str))).any()


def main_kpis(table: pd.DataFrame) -> list[str]:
    """Numeric columns of a comparison table that hold the main KPIs (absent ones are skipped).

    Parameters
    ----------
    table : pandas.DataFrame
        KPIs as columns.
    """
    numeric = [str(c) for c in table.columns if _is_numeric(table[c])]
    chosen: list[str] = []
    for patterns in MAIN_KPI_PATTERNS:
        for pattern in patterns:
            hit = next((c for c in numeric if re.search(pattern, c.lower()) and c not in chosen),
                       None)
            if hit:
                chosen.append(hit)
                break
    return chosen


@dataclass(frozen=True)
class Headline:
    """One headline figure of a report.

    Attributes
    ----------
    title : str
        What it is, as the report shows it.
    keys : tuple of str
        KPI keys tried in order; the first present one is shown.
    absent : str
        Said instead of a value when the run has none of the keys.
    """

    title: str
    keys: tuple[str, ...]
    absent: str


#: The figures a report opens with (issue 11): what the market saved, for how many, what it did
#: to the grid's peak and limits, and what flexibility cost.
HEADLINES = (
    Headline("Savings", ("total_savings_eur", "savings_eur"),
             "not computed for this run"),
    Headline("Better off", ("share_better_off",), "not computed for this run"),
    Headline("Peak import", ("peak_import_kw",), "no power flow in this run"),
    Headline("Violation intervals", ("violation_intervals", "voltage_violation_intervals"),
             "no power flow in this run"),
    Headline("Flexibility cost", ("flex_cost_eur",),
             "no flexibility market (the scenario has no dso: part)"),
)

#: For each headline, a reference shown under it when the run has the key.
_HEADLINE_REFERENCES = {
    "total_savings_eur": ("bau_total_cost_eur", "of {} business-as-usual"),
    "peak_import_kw": ("bau_peak_import_kw", "business-as-usual {}"),
    "violation_intervals": ("intervals", "of {} intervals"),
    "voltage_violation_intervals": ("intervals", "of {} intervals"),
    "flex_cost_eur": ("flex_activated_kwh", "for {} activated"),
}


def headline_values(kpis: Mapping[str, object]) -> list[tuple[str, str, str]]:
    """The headline figures of one run: (title, value with unit, what it is measured against).

    Parameters
    ----------
    kpis : mapping
        The run's KPIs (``kpis.json``).
    """
    out = []
    for headline in HEADLINES:
        key = next((k for k in headline.keys if kpis.get(k) is not None), None)
        if key is None:
            out.append((headline.title, "—", headline.absent))
            continue
        info = describe_kpi(key)
        unit = "" if info.share or info.unit == "intervals" else f" {info.unit}"
        value = format_value(kpis[key], info) + unit
        reference = ""
        if key in _HEADLINE_REFERENCES:
            ref_key, text = _HEADLINE_REFERENCES[key]
            if kpis.get(ref_key) is not None:
                ref_info = describe_kpi(ref_key)
                ref_unit = "" if ref_info.unit in ("", "intervals") else f" {ref_info.unit}"
                reference = text.format(format_value(kpis[ref_key], ref_info) + ref_unit)
        out.append((headline.title, value, reference))
    return out


def headline_html(columns: Mapping[str, Mapping[str, object]]) -> str:
    """The headline figures: cards for one run, a table with one row per run for several.

    Parameters
    ----------
    columns : mapping of str to mapping of str to object
        Run label (a design) -> its KPIs.
    """
    runs = {label: headline_values(kpis) for label, kpis in columns.items()}
    if len(runs) == 1:
        (values,) = runs.values()
        cards = "".join(
            f"<div class='card'><div class='card-title'>{html.escape(title)}</div>"
            f"<div class='card-value'>{html.escape(value)}</div>"
            f"<div class='card-note'>{html.escape(note)}</div></div>"
            for title, value, note in values)
        return f"<div class='headline'>{cards}</div>"
    heads = "".join(f"<th class='num'>{html.escape(h.title)}</th>" for h in HEADLINES)
    rows = []
    for label, values in runs.items():
        cells = "".join(f"<td class='num' title='{html.escape(note, quote=True)}'>"
                        f"{html.escape(value)}</td>" for _, value, note in values)
        rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    notes = sorted({note for values in runs.values() for _, value, note in values
                    if value == "—"})
    foot = "".join(f"<p class='help'>—: {html.escape(n)}</p>" for n in notes)
    return (f"<table class='headline-table'><thead><tr><th>design</th>{heads}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{foot}")
