"""Reading scenario files: YAML -> :class:`ScenarioConfig`, with errors that name the field and
the line of the file where it stands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from lemgrid.errors import InputError
from lemgrid.scenario.config import ScenarioConfig


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that refuses duplicate keys and reads 1e3 as a number (YAML 1.2)."""


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
#: Numbers with an exponent: YAML 1.1 (PyYAML) reads 1e3 and 1.5e3 as text, YAML 1.2 and every
#: reader of numbers as numbers. Values are not coerced (a quoted "5" is text), so they must be
#: numbers in the file.
EXPONENT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT, list("-+0123456789."))


def _line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the YAML node at a location of the file (the deepest one that exists)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if str(k.value) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            match = node.value[part]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def _is_tag(mapping: dict, part: Any) -> bool:
    """Whether ``part`` is the branch of a tagged union that pydantic puts in an error location
    (the value of the mapping's discriminator ``design`` or ``type``)."""
    return any(mapping.get(key) == part for key in ("design", "type"))


def file_location(data: Any, loc: tuple) -> tuple:
    """The parts of a pydantic error location that are keys and indices of the file.

    Pydantic inserts the branch names of unions (``battery``, ``community``,
    ``list[ParticipantConfig]``, ``function-after[...]``) between the levels of the file; they are
    left out. A key that the file lacks stays when it is the last part (a missing field).
    """
    out: list = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and not _is_tag(node, part) and (part in node or last):
            out.append(part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
    return tuple(out)


def field_path(loc: tuple) -> str:
    """``('assets', 0, 'capacity_kwh')`` -> ``'assets[0].capacity_kwh'``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(exc: ValidationError, source: str, data: Any,
                            root: yaml.Node | None) -> str:
    """One line per problem: ``FILE line N: field.path: message (got VALUE)``.

    ``data`` is what was validated, ``root`` its YAML node tree (None: no lines to show).
    """
    lines = []
    seen = set()
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc += (error["ctx"]["discriminator"].strip("'"),)  # name the tag's key
        loc = file_location(data, loc)
        path = field_path(loc)
        message = error["msg"].removeprefix("Value error, ")
        if (path, message) in seen:
            continue
        seen.add((path, message))
        line = _line_of(root, loc) if root is not None else None
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
        raise InputError(format_validation_error(exc, source, data, root)) from None


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
