"""Scenarios: the validated YAML format and its translation into arrays.

>>> from lemgrid.scenario import load_scenario
>>> scenario = load_scenario("examples/lv-rural-community.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from lemgrid.scenario.build import FieldError, Scenario, build_scenario
from lemgrid.scenario.config import ScenarioConfig
from lemgrid.scenario.loading import load_scenario_config, parse_scenario

__all__ = ["Scenario", "ScenarioConfig", "build_scenario", "load_scenario", "parse_scenario",
           "load_scenario_config", "FieldError"]


def load_scenario(path: str | Path, **overrides) -> Scenario:
    """Read, validate and build a scenario file.

    Parameters
    ----------
    path : str or Path
        A YAML scenario file.
    **overrides
        Top-level keys that replace the file's (e.g. ``days=7``, ``market={"design": "none"}``);
        they are validated like the file.

    Raises
    ------
    InputError
        Any invalid field, with the file and line where the field stands.
    """
    import yaml

    from lemgrid.errors import InputError
    from pydantic import ValidationError

    from lemgrid.scenario.loading import _line_of, _Loader, format_validation_error

    config = load_scenario_config(path)
    if overrides:
        data = config.model_dump(exclude_unset=True)
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            config = ScenarioConfig.model_validate(data)
        except ValidationError as exc:
            error = InputError(format_validation_error(exc, f"{path} (with overrides)", data,
                                                       None))
            error.field = next((str(e["loc"][0]) for e in exc.errors() if e["loc"]), None)
            raise error from None
    try:
        return build_scenario(config)
    except FieldError as exc:
        if exc.loc and overrides.get(exc.loc[0]) is not None:
            # The value came from the caller, not from the file: no line of the file to show.
            error = InputError(f"{path} (overridden {exc.loc[0]}): {exc}")
        else:
            text = Path(path).read_text(encoding="utf-8")
            line = _line_of(yaml.compose(text, Loader=_Loader), exc.loc)
            where = f"{path} line {line}" if line else str(path)
            error = InputError(f"{where}: {exc}")
        error.field = str(exc.loc[0]) if exc.loc else None
        raise error from None
