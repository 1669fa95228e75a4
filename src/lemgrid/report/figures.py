"""The report's plots: small pure functions, arrays in, a plotly Figure out.

Time series take a mapping ``label -> array`` so that one builder draws a single run (a design and
business-as-usual) and a comparison (one line per design) alike. Long horizons are aggregated into
round buckets (:mod:`lemgrid.report.resample`); where extremes matter (transformer peaks, voltage
limits) the bucket minimum and maximum are drawn too. Only SVG traces are used (no WebGL), so the
plots render in any browser, including headless ones without a GPU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from lemgrid.report.resample import MAX_POINTS, Buckets, make_buckets
from lemgrid.report.tables import describe_kpi

#: Colour of business-as-usual and of reference lines.
GREY = "#7f7f7f"
PALETTE = qualitative.Plotly
BAU_LABEL = "business-as-usual"

# The legend sits between the title and the plot; ``traceorder="normal"`` keeps grouped entries
# (a band with its line) on one row instead of stacking each group vertically.
_LAYOUT = dict(template="plotly_white", height=400, margin=dict(l=70, r=30, t=90, b=50),
               title=dict(y=0.97, yanchor="top"),
               legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, traceorder="normal"),
               hovermode="x unified")

#: More legend entries than fit on one row above the plot: a column on the right instead.
_LEGEND_ROW_MAX = 6


def _style(fig: go.Figure, **overrides) -> go.Figure:
    """The report's common layout, with ``overrides`` (call it after adding the traces)."""
    fig.update_layout(**_LAYOUT)
    entries = sum(1 for t in fig.data if t.showlegend is not False and t.name)
    if entries > _LEGEND_ROW_MAX:
        fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1.0, x=1.02),
                          margin=dict(t=60))
    return fig.update_layout(**overrides)


def colour(position: int) -> str:
    """The colour of the ``position``-th design (the same in every plot of a report)."""
    return PALETTE[position % len(PALETTE)]


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _colours(labels) -> dict[str, str]:
    out, k = {}, 0
    for label in labels:
        if label == BAU_LABEL:
            out[label] = GREY
        else:
            out[label] = colour(k)
            k += 1
    return out


def _per(buckets: Buckets) -> str:
    return f"mean per {buckets.label}" if buckets.aggregated else "per interval"


def _band(fig: go.Figure, x, lo: np.ndarray, hi: np.ndarray, colour_hex: str, name: str,
          group: str) -> None:
    """Shade between ``lo`` and ``hi`` (bucket minimum and maximum)."""
    fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line=dict(width=0), hoverinfo="skip",
                             showlegend=False, legendgroup=group))
    fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor=_rgba(colour_hex, 0.18), hoverinfo="skip", name=name,
                             legendgroup=group))


def _no_data_note(fig: go.Figure, text: str) -> None:
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font=dict(size=14, color=GREY))


#: The design without a local market (business-as-usual).
NO_MARKET = "none"


def _no_trade_note(fig: go.Figure, labels) -> None:
    """Say why a plot of local trade is empty: no market at all, or a market nobody used."""
    labels = [str(label) for label in labels]
    if labels and all(label == NO_MARKET for label in labels):
        why = "design 'none' has no local market: everyone buys from and sells to the retailer"
    else:
        why = ("nobody traded locally: no interval had both a seller and a buyer at prices "
               "better than the retailer's")
    _no_data_note(fig, f"no local trade in the horizon<br>({why})")


def price_figure(time_index: pd.DatetimeIndex, dt_h: float,
                 prices_eur_per_kwh: Mapping[str, np.ndarray], tariffs: Mapping[str, float], *,
                 max_points: int = MAX_POINTS) -> go.Figure:
    """Local market price over time against the retail price and the feed-in tariff.

    Parameters
    ----------
    time_index : pandas.DatetimeIndex, shape (T,)
    dt_h : float
        Interval length [h].
    prices_eur_per_kwh : mapping of str to ndarray, shape (T,)
        Local price of each run [EUR/kWh]; NaN where nothing traded (drawn as a gap).
    tariffs : mapping
        ``import_eur_per_kwh``, ``network_eur_per_kwh``, ``export_eur_per_kwh`` [EUR/kWh]: the
        retail price is import + network, the feed-in tariff is export.
    max_points : int
        Largest number of points along time.
    """
    b = make_buckets(time_index, dt_h, max_points)
    x = b.starts
    fig = go.Figure()
    colours = _colours(prices_eur_per_kwh)
    traded = False
    for label, price in prices_eur_per_kwh.items():
        mean = b.mean(price)
        traded |= bool(np.isfinite(mean).any())
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", name=label, connectgaps=False,
                                 line=dict(color=colours[label], width=1.6),
                                 hovertemplate="%{y:.4f} EUR/kWh"))
    retail = float(tariffs.get("import_eur_per_kwh", np.nan)) + \
        float(tariffs.get("network_eur_per_kwh", 0.0))
    feed_in = float(tariffs.get("export_eur_per_kwh", np.nan))
    ends = [x[0], x[-1]]
    for name, level, dash in (("retail (import + network)", retail, "dash"),
                              ("feed-in tariff", feed_in, "dot")):
        if np.isfinite(level):
            fig.add_trace(go.Scatter(x=ends, y=[level, level], mode="lines",
                                     name=f"{name}: {level:.4f}", hoverinfo="skip",
                                     line=dict(color=GREY, dash=dash, width=1.4)))
    if not traded:
        _no_trade_note(fig, prices_eur_per_kwh)
    _style(fig, title=f"Local market price ({_per(b)})",
           yaxis_title="EUR/kWh")
    return fig


def volume_figure(time_index: pd.DatetimeIndex, dt_h: float,
                  volumes_kwh: Mapping[str, np.ndarray], *, max_points: int = MAX_POINTS
                  ) -> go.Figure:
    """Energy traded between participants, summed per interval or per bucket.

    Parameters
    ----------
    time_index : pandas.DatetimeIndex, shape (T,)
    dt_h : float
        Interval length [h].
    volumes_kwh : mapping of str to ndarray, shape (T,)
        Locally traded energy of each run per interval [kWh].
    max_points : int
        Largest number of bars along time.
    """
    b = make_buckets(time_index, dt_h, max_points)
    fig = go.Figure()
    colours = _colours(volumes_kwh)
    traded = False
    for label, volume in volumes_kwh.items():
        sums = b.sum(volume)
        traded |= bool(np.nansum(np.abs(sums)) > 0)
        fig.add_trace(go.Bar(x=b.starts, y=sums, name=label,
                             marker=dict(color=colours[label], line=dict(width=0)),
                             hovertemplate="%{y:.2f} kWh"))
    if not traded:
        _no_trade_note(fig, volumes_kwh)
    per = b.label if b.aggregated else "interval"
    _style(fig, title=f"Locally traded energy (kWh per {per})",
           yaxis_title=f"kWh per {per}", barmode="group", bargap=0.05)
    return fig


def transformer_figure(time_index: pd.DatetimeIndex, dt_h: float,
                       p_kw: Mapping[str, np.ndarray], *, bands: bool = True,
                       max_points: int = MAX_POINTS) -> go.Figure:
    """Power through the substation transformer (import positive, export negative).

    Parameters
    ----------
    time_index : pandas.DatetimeIndex, shape (T,)
    dt_h : float
        Interval length [h].
    p_kw : mapping of str to ndarray, shape (T,)
        Import at the substation of each run [kW] (label :data:`BAU_LABEL` is drawn grey).
    bands : bool
        When aggregated, shade each run's bucket minimum to maximum (the peaks).
    max_points : int
        Largest number of points along time.
    """
    b = make_buckets(time_index, dt_h, max_points)
    fig = go.Figure()
    colours = _colours(p_kw)
    for label, p in p_kw.items():
        if bands and b.aggregated:
            _band(fig, b.starts, b.min(p), b.max(p), colours[label],
                  f"{label}: min–max per {b.label}", label)
        fig.add_trace(go.Scatter(x=b.starts, y=b.mean(p), mode="lines", name=label,
                                 legendgroup=label, line=dict(color=colours[label], width=1.6),
                                 hovertemplate="%{y:.1f} kW"))
    fig.add_hline(y=0.0, line=dict(color="black", width=0.8))
    if not any(np.isfinite(np.asarray(p, dtype=float)).any() for p in p_kw.values()):
        _no_data_note(fig, "no transformer power: the power flow converged in no interval")
    _style(fig, title=f"Transformer power, import positive ({_per(b)})",
           yaxis_title="kW")
    return fig


def _natural_key(text: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", text) if part]


def _worst_deviation(lo: np.ndarray, hi: np.ndarray, nominal_pu: float = 1.0) -> np.ndarray:
    """Per cell, whichever of the bucket minimum and maximum lies farther from nominal."""
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(hi - nominal_pu) >= np.abs(lo - nominal_pu), hi, lo)


def voltage_heatmap_figure(time_index: pd.DatetimeIndex, dt_h: float, vm_pu: np.ndarray,
                           bus_names: np.ndarray, limits: Mapping[str, float], *,
                           max_points: int = MAX_POINTS) -> go.Figure:
    """Voltage of every bus over time as a heatmap (bus x time), coloured by deviation from 1 p.u.

    When aggregated, each cell is the bucket's minimum or maximum, whichever deviates more from
    nominal, so that a short violation stays visible. Buses that are never energised are left out.

    Parameters
    ----------
    time_index : pandas.DatetimeIndex, shape (T,)
    dt_h : float
        Interval length [h].
    vm_pu : ndarray, shape (T, n_bus)
        Bus voltage magnitudes [p.u.] (NaN: not energised / not converged).
    bus_names : ndarray of str, shape (n_bus,)
    limits : mapping
        ``vm_min_pu``, ``vm_max_pu`` [p.u.] (shown on the colour bar).
    max_points : int
        Largest number of time columns.
    """
    b = make_buckets(time_index, dt_h, max_points)
    vm = np.asarray(vm_pu, dtype=float)
    energised = np.flatnonzero(~np.isnan(vm).all(axis=0))
    # "Bus 2" before "Bus 10", so that a reader finds a bus by its name.
    live = sorted(energised, key=lambda j: _natural_key(str(bus_names[j])))
    worst = _worst_deviation(b.min(vm[:, live]), b.max(vm[:, live]))
    names = [str(bus_names[j]) for j in live]
    fig = go.Figure()
    if names:
        # float32 halves the bytes of the largest array of a report; 1e-7 p.u. is plenty.
        fig.add_trace(go.Heatmap(
            x=b.starts, y=names, z=worst.T.astype(np.float32), zmid=1.0,
            colorscale="RdBu_r", colorbar=dict(title=dict(text="p.u.")),
            hovertemplate="%{y}<br>%{x}<br>%{z:.4f} p.u.<extra></extra>"))
    else:
        _no_data_note(fig, "no energised bus")
    lo, hi = limits.get("vm_min_pu"), limits.get("vm_max_pu")
    what = (f"worst of min/max per {b.label}" if b.aggregated else "per interval")
    _style(fig, hovermode="closest", title=f"Voltage per bus ({what}); limits {lo}–{hi} p.u.",
           height=int(np.clip(160 + 9 * len(names), 360, 1100)),
           yaxis=dict(autorange="reversed", type="category"))
    return fig


def nonconverged_intervals(vm_pu: np.ndarray) -> np.ndarray:
    """Boolean (T,): intervals without any bus voltage, i.e. whose power flow did not converge
    (a converged interval has a voltage at every energised bus, the slack at least)."""
    return np.isnan(np.asarray(vm_pu, dtype=float)).all(axis=1)


def voltage_envelope_figure(time_index: pd.DatetimeIndex, dt_h: float,
                            vm_pu: Mapping[str, np.ndarray], limits: Mapping[str, float], *,
                            max_points: int = MAX_POINTS) -> go.Figure:
    """Lowest and highest bus voltage of the grid over time, with the DSO's voltage band.

    Parameters
    ----------
    time_index : pandas.DatetimeIndex, shape (T,)
    dt_h : float
        Interval length [h].
    vm_pu : mapping of str to ndarray, shape (T, n_bus)
        Bus voltages of each run [p.u.].
    limits : mapping
        ``vm_min_pu``, ``vm_max_pu`` [p.u.], drawn as dashed lines.
    max_points : int
        Largest number of points along time.
    """
    b = make_buckets(time_index, dt_h, max_points)
    fig = go.Figure()
    colours = _colours(vm_pu)
    failures: dict[str, np.ndarray] = {}
    converged_somewhere = False
    with np.errstate(invalid="ignore"):
        for label, vm in vm_pu.items():
            vm = np.asarray(vm, dtype=float)
            # An interval whose buses are all NaN (did not converge) is a gap in the lines and a
            # marker of its own (in every bucket that holds one), never averaged away.
            failed = nonconverged_intervals(vm)
            finite = ~failed
            converged_somewhere |= bool(finite.any())
            if failed.any():
                failures[label] = b.max(failed.astype(float)) > 0
            v_min = np.full(len(vm), np.nan)
            v_max = np.full(len(vm), np.nan)
            v_min[finite] = np.nanmin(vm[finite], axis=1)
            v_max[finite] = np.nanmax(vm[finite], axis=1)
            # One legend entry per run toggles both of its lines.
            for name, series, dash in (("max", b.max(v_max), "solid"),
                                       ("min", b.min(v_min), "dash")):
                fig.add_trace(go.Scatter(x=b.starts, y=series, mode="lines", name=label,
                                         legendgroup=label, showlegend=name == "max",
                                         line=dict(color=colours[label], width=1.4, dash=dash),
                                         hovertemplate=f"{name} %{{y:.4f}} p.u."))
    floor = float(limits.get("vm_min_pu", 0.9))
    for label, bucket in failures.items():
        fig.add_trace(go.Scatter(
            x=b.starts[bucket], y=np.full(int(bucket.sum()), floor), mode="markers",
            name=f"{label}: power flow did not converge", legendgroup=label,
            marker=dict(symbol="x", size=9, color="#d62728"),
            hovertemplate="power flow did not converge<extra>" + label + "</extra>"))
    for key, text in (("vm_max_pu", "upper limit"), ("vm_min_pu", "lower limit")):
        if key in limits:
            fig.add_hline(y=float(limits[key]), line=dict(color="#d62728", dash="dot", width=1.5),
                          annotation_text=f"{text} {float(limits[key]):.2f} p.u.",
                          annotation_position="top left" if key == "vm_max_pu" else "bottom left")
    if not converged_somewhere:
        _no_data_note(fig, "no voltages: the power flow converged in no interval (red crosses)")
    per = f"extremes per {b.label}" if b.aggregated else "per interval"
    _style(fig, title=f"Voltage envelope over all buses: highest solid, lowest dashed ({per})",
           yaxis_title="p.u.")
    return fig


def savings_figure(savings_eur: Mapping[str, pd.Series]) -> go.Figure:
    """Savings of every participant against business-as-usual, sorted.

    Parameters
    ----------
    savings_eur : mapping of str to pandas.Series
        Each run's savings [EUR] over the horizon, indexed by participant id. One run: bars sorted
        from the largest loss to the largest saving, green for savings, red for losses. Several:
        grouped bars, participants sorted by their mean saving over the runs.
    """
    fig = go.Figure()
    frame = pd.DataFrame(dict(savings_eur))
    frame = frame.loc[frame.mean(axis=1).sort_values(kind="stable").index]
    x = [str(p) for p in frame.index]
    if frame.shape[1] == 1:
        label = frame.columns[0]
        values = frame[label].to_numpy(dtype=float)
        fig.add_trace(go.Bar(x=x, y=values, name=label,
                             marker=dict(color=np.where(values >= 0, "#2ca02c", "#d62728")),
                             hovertemplate="%{x}: %{y:,.2f} EUR<extra></extra>"))
    else:
        colours = _colours(frame.columns)
        for label in frame.columns:
            fig.add_trace(go.Bar(x=x, y=frame[label].to_numpy(dtype=float), name=label,
                                 marker=dict(color=colours[label]),
                                 hovertemplate=f"{label}: %{{y:,.2f}} EUR<extra></extra>"))
    fig.add_hline(y=0.0, line=dict(color="black", width=0.8))
    if frame.empty:
        _no_data_note(fig, "no participants")
    elif not np.nanmax(np.abs(frame.to_numpy(dtype=float)), initial=0.0) > 0.005:
        why = ("design 'none' is business-as-usual itself"
               if all(str(c) == NO_MARKET for c in frame.columns)
               else "every bill equals its business-as-usual bill to the cent")
        _no_data_note(fig, f"no savings and no losses<br>({why})")
    _style(fig, hovermode="closest", barmode="group",
           title="Savings per participant against business-as-usual",
           yaxis_title="EUR", xaxis=dict(type="category", title="participant"))
    return fig


def kpi_bars_figure(table: pd.DataFrame, keys: list[str]) -> go.Figure:
    """One small bar chart per KPI, one bar per design.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per design (the index holds the design names), KPIs as columns.
    keys : list of str
        Columns to draw (numeric).
    """
    designs = [str(d) for d in table.index]
    colours = [colour(i) for i in range(len(designs))]
    if not keys:
        fig = go.Figure()
        _no_data_note(fig, "none of the main KPIs is in the comparison table")
        _style(fig, title="Main KPIs per design")
        return fig
    n_cols = min(3, len(keys))
    n_rows = -(-len(keys) // n_cols)
    titles = []
    for key in keys:
        info = describe_kpi(key)
        unit = "%" if info.share else info.unit
        titles.append(f"{info.label} [{unit}]" if unit else info.label)
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=titles,
                        vertical_spacing=0.5 / n_rows, horizontal_spacing=0.08)
    for k, key in enumerate(keys):
        info = describe_kpi(key)
        values = pd.to_numeric(table[key], errors="coerce").to_numpy(dtype=float)
        if info.share and np.nanmax(np.abs(values), initial=0.0) <= 1.0:
            values = 100.0 * values
        fig.add_trace(go.Bar(x=designs, y=values, marker=dict(color=colours), showlegend=False,
                             name=info.label, hovertemplate="%{x}: %{y:,.4g}<extra></extra>"),
                      row=k // n_cols + 1, col=k % n_cols + 1)
    _style(fig, hovermode="closest", title="Main KPIs per design",
           height=80 + 300 * n_rows)
    return fig
