"""Report sections of the DSO: the traffic light over time and where flexibility was bought."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from lemgrid.report.figures import _style
from lemgrid.report.html import Section
from lemgrid.report.tables import frame_table_html

STATE_COLOURS = {"green": "#2ca02c", "amber": "#ff9f0e", "red": "#d62728"}
STATE_LEVEL = {"green": 0, "amber": 1, "red": 2}


def traffic_light_figure(grid_state: pd.DataFrame) -> go.Figure:
    """One coloured bar per interval (green / amber / red), the reason on hover; long horizons
    show the worst state of each day."""
    frame = grid_state.copy()
    frame["interval"] = pd.to_datetime(frame["interval"])
    frame["level"] = frame["state"].map(STATE_LEVEL)
    if len(frame) > 2000:
        daily = frame.set_index("interval").resample("1D")
        frame = pd.DataFrame({"level": daily["level"].max(),
                              "reason": daily["reason"].agg(
                                  lambda r: next((x for x in r if x), ""))}).reset_index()
        frame["state"] = frame["level"].map({v: k for k, v in STATE_LEVEL.items()})
    fig = go.Figure()
    for state, colour in STATE_COLOURS.items():
        part = frame[frame["state"] == state]
        fig.add_trace(go.Bar(x=part["interval"], y=[1] * len(part), name=state,
                             marker_color=colour, hovertext=part["reason"],
                             hovertemplate="%{x}<br>%{hovertext}<extra>" + state + "</extra>"))
    _style(fig, title="Traffic light", barmode="stack", bargap=0, yaxis=dict(visible=False),
           height=220)
    return fig


def flexibility_by_bus_figure(activations: pd.DataFrame, dt_h: float) -> go.Figure:
    """Energy activated per bus and buyer / service [kWh] (reservations left out)."""
    used = activations[activations["direction"] != "reserved"]
    fig = go.Figure()
    if used.empty:
        fig.add_annotation(text="no flexibility was activated", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        return _style(fig, title="Flexibility activated per bus")
    energy = (used.assign(kwh=used["kw"] * dt_h, who=used["buyer"] + " " + used["service"])
              .groupby(["bus", "who"])["kwh"].sum().unstack(fill_value=0))
    for who in energy.columns:
        fig.add_trace(go.Bar(x=energy.index, y=energy[who], name=who))
    return _style(fig, title="Flexibility activated per bus", barmode="stack",
                  yaxis_title="kWh", hovermode="closest")


def dso_sections(tables: dict, dt_h: float) -> list[Section]:
    """The DSO's sections, when the run had a DSO (``grid_state`` and ``flex_activations``)."""
    if "grid_state" not in tables:
        return []
    activations = tables["flex_activations"]
    return [
        Section("Traffic light", traffic_light_figure(tables["grid_state"]),
                "Green: no violation forecast. Amber: the schedule would violate a limit, the DSO "
                "bought flexibility. Red: still violated at delivery (an interval whose power "
                "flow did not converge is always red); with red control on, the DSO curtailed "
                "or controlled directly. Hover for the reason."),
        Section("Where flexibility was bought", flexibility_by_bus_figure(activations, dt_h),
                "Energy activated per bus, by buyer (DSO, TSO) and service (CM congestion, VM "
                "voltage, balancing, red: direct control)."),
        Section("Flexibility activations", frame_table_html(activations.head(2000)),
                "Every activation (first 2,000 rows; all are in flex_activations.csv).",
                collapsed=True),
    ]
