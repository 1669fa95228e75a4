"""Reading scenario files: YAML -> :class:`ScenarioConfig`, with errors that name the field and
the line of the file where it stands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lemgrid.errors import InputError
from lemgrid.scenario.config import ScenarioConfig


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that keeps dates as text-free types but refuses duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the YAML node at a pydantic error location (the deepest one that exists)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if str(k.value) == str(part)), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            continue  # a union/discriminator tag in the location: not a YAML level
        line = node.start_mark.line + 1
    return line


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("battery", "ev", "flexible_load", "pv", "list[ParticipantConfig]") or (
                isinstance(part, str) and part.startswith(("literal[", "function-"))):
            continue  # pydantic's union branch names, not keys of the file
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(exc: ValidationError, source: str, root: yaml.Node | None) -> str:
    """One line per problem: ``FILE line N: field.path: message (got VALUE)``."""
    lines = []
    seen = set()
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = _field_path(loc)
        message = error["msg"].removeprefix("Value error, ")
        if (path, message) in seen:
            continue
        seen.add((path, message))
        line = _line_of(root, loc)
        where = f"{source} line {line}" if line else source
        got = error.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        lines.append(f"{where}: {path}: {message}{shown}")
    return "\n".join(lines)


def parse_scenario(text: str, source: str = "<scenario>") -> ScenarioConfig:
    """Validate a scenario given as YAML text.

    Raises
    ------
    InputError
        Malformed YAML or any invalid field; the message names the field and the line.
    """
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{source} line {mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: a scenario must be a YAML mapping (key: value), got "
                         f"{type(data).__name__}")
    try:
        return ScenarioConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, source, root)) from None


def load_scenario_config(path: str | Path) -> ScenarioConfig:
    """Read and validate a scenario file (FileNotFoundError if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such scenario file", str(path))
    config = parse_scenario(path.read_text(encoding="utf-8"), str(path))
    grid = Path(config.grid)
    if config.grid.lower().endswith(".json") and not grid.is_absolute():
        # A grid file named in a scenario is relative to the scenario file.
        config = config.model_copy(update={"grid": str(path.parent / grid)})
    return config
