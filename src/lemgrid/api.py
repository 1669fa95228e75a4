"""The public Python API, re-exported lazily by :mod:`lemgrid`.

>>> import lemgrid
>>> scenario = lemgrid.load_scenario("examples/lv-rural-community.yaml", days=1)  # doctest: +SKIP
>>> result = lemgrid.simulate(scenario, "uniform")                                 # doctest: +SKIP
>>> result.participant_frame("cost_eur")       # intervals x participant ids     # doctest: +SKIP

Every function imports what it needs when called, so ``import lemgrid`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from lemgrid.dso.grid_check import GridCheck
    from lemgrid.grid.kpis import GridLimits
    from lemgrid.market import ClearingResult, Mechanism, OrderBatch
    from lemgrid.scenario import Scenario
    from lemgrid.sim.results import SimulationResult


def load_scenario(source: str | Path | Mapping[str, Any] | Any, /, **overrides: Any) -> Scenario:
    """A scenario from a YAML file, a mapping with the file's keys, or a pandapower net.

    Parameters
    ----------
    source : str, Path, dict or pandapower.pandapowerNet
        A scenario file; a mapping with the scenario format's keys (``grid`` is required); or a
        pandapower net, whose loads are the participants unless ``participants`` is given and
        whose SimBench profiles (``net.profiles``), if any, are used.
    **overrides
        Top-level scenario keys that replace the source's (``days=7``,
        ``market={"design": "uniform"}``), validated like the file.

    Raises
    ------
    InputError
        Any invalid field, naming it (and, for a file, its line).
    """
    from lemgrid.scenario import load_scenario as load_file

    if isinstance(source, str | Path):
        return load_file(source, **overrides)
    given = {k: v for k, v in overrides.items() if v is not None}
    if type(source).__name__ == "pandapowerNet":  # a dict too; checked without importing it
        from lemgrid.grid.sources import grid_from_pandapower

        spec = f"pandapower:{getattr(source, 'name', '') or 'net'}"
        return _build({"grid": spec, **given}, "<pandapower net>",
                      grid_from_pandapower(source, spec))
    if isinstance(source, Mapping):
        return _build({**source, **given}, "<scenario mapping>", None)
    from lemgrid.errors import InputError

    raise InputError("load_scenario: source must be a scenario file path, a mapping or a "
                     f"pandapower net, got {type(source).__name__}")


def _build(data: dict[str, Any], source: str, grid: Any) -> Scenario:
    from pydantic import ValidationError

    from lemgrid.errors import InputError
    from lemgrid.scenario import FieldError, ScenarioConfig, build_scenario
    from lemgrid.scenario.loading import format_validation_error

    try:
        config = ScenarioConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, source, data, None)) from None
    try:
        return build_scenario(config, grid)
    except FieldError as exc:
        raise InputError(f"{source}: {exc}") from None


def simulate(scenario: Scenario, design: str | None = None, *,
             progress: Callable[[int, int], None] | None = None) -> SimulationResult:
    """Run a market design day by day over the scenario's horizon (see
    :func:`lemgrid.sim.runner.simulate`); labelled tables: ``result.bills()``,
    ``result.intervals()``, ``result.participant_frame(name)``, ``result.bus_frame()``."""
    from lemgrid.sim.runner import simulate as run

    return run(scenario, design, progress=progress)


@dataclass(frozen=True, eq=False)
class Comparison:
    """Several designs on one scenario.

    Attributes
    ----------
    results : dict of str to SimulationResult
        Each design's run, by design name, in the order run.
    kpis : pandas.DataFrame
        One row per design (index ``design``), the scalar KPIs as columns.
    """

    results: dict[str, SimulationResult]
    kpis: pd.DataFrame


def compare(scenario: Scenario, designs: Sequence[str] | None = None) -> Comparison:
    """Simulate several designs (default: every registered one) on the same scenario."""
    from lemgrid.sim.outputs import comparison_table
    from lemgrid.sim.runner import compare as run

    results = run(scenario, designs)
    return Comparison({r.design: r for r in results}, comparison_table(results))


def powerflow(source: str | Path | Scenario, *, start: str | None = None,
              days: float | None = None, resolution: str = "15min",
              limits: GridLimits | None = None) -> GridCheck:
    """AC power flow of every interval: of a grid's own profiles (a grid spec such as
    ``simbench:CODE``, ``ieee33``, a pandapower ``.json``), of a scenario file's or of a
    :class:`~lemgrid.scenario.Scenario`'s participants without flexibility. Labelled tables:
    ``check.voltages()`` and ``check.loadings()``."""
    from lemgrid.dso.grid_check import check_injections, powerflow_study
    from lemgrid.grid.kpis import GridLimits
    from lemgrid.scenario import Scenario

    if isinstance(source, Scenario):
        p, q = source.bus_injections(source.participants.net_p_kw)
        return check_injections(source.name, source.network, p, q, source.time_index,
                                source.dt_h, limits or source.limits)
    return powerflow_study(str(source), start=start, days=days, resolution=resolution,
                           limits=limits or GridLimits())


def clear(orders: OrderBatch | pd.DataFrame | str | Path, mechanism: Mechanism = "uniform", *,
          k: float | None = None) -> ClearingResult:
    """Clear orders (an :class:`~lemgrid.market.OrderBatch`, a table with the orders-file
    columns, or an orders CSV file) with ``uniform``, ``pay-as-bid`` or ``continuous``.
    Labelled tables: ``result.trades_frame()``, ``result.fills_frame()``,
    ``result.markets_frame()``."""
    import pandas as pd

    from lemgrid.market import OrderBatch, read_orders_csv
    from lemgrid.market import clear as run

    if isinstance(orders, str | Path):
        orders = read_orders_csv(orders)
    elif isinstance(orders, pd.DataFrame):
        orders = OrderBatch.from_frame(orders)
    return run(orders, mechanism, k=k)


def render_report(result: SimulationResult | Comparison, path: str | Path) -> Path:
    """Write the HTML report of a simulation (with its DSO sections) or of a comparison."""
    from lemgrid.report import render_report as render_one
    from lemgrid.report.dso import dso_sections

    if isinstance(result, Comparison):
        from lemgrid.report.html import render_comparison

        return render_comparison(list(result.results.values()), result.kpis, path)
    return render_one(result, path, sections=dso_sections(result.tables, result.dt_h))
