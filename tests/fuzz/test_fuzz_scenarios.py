"""Mutation fuzzer of scenario files (issue 10): every mutated example either loads with sane
values or is refused with an InputError naming the file and a field or line.

Each example of ``examples/`` and ``examples/systems/`` is mutated MUTATIONS_PER_FILE times
(types, values, keys, structure, YAML text), with a fixed seed per file, and run through
:func:`lemgrid.scenario.load_scenario` (parsing, validation, building the arrays; no simulation).
Loaded grids are cached in the process, so a case costs milliseconds.

Oracle. Any exception other than InputError fails (a traceback). An InputError must start with the
file's path and name a line or field, and the section of the file that was mutated. A mutation that puts nonsense into the file must be refused
(see ``Mutation.must_refuse``): a boolean, text or a container where the file had a number,
a non-finite number anywhere, a negative number where only prices may be negative, a huge number
(1e20 and up), a key the format does not have, a duplicated key, a section hoisted or pushed one
level off. Whatever loads is checked: finite arrays, batteries and windows with positive ratings,
no boolean where the format expects a number.
"""

from __future__ import annotations

import copy
import math
import random
import typing
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import BaseModel

import lemgrid.scenario.build as build_module
from lemgrid.errors import InputError
from lemgrid.scenario import load_scenario
from lemgrid.scenario.loading import EXPONENT

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "examples").glob("*.yaml")) + sorted(
    (ROOT / "examples" / "systems").glob("*.yaml"))
MUTATIONS_PER_FILE = 70

#: (parent key, key) of the numbers that may be negative: prices.
SIGNED = {("tariffs", "import_eur_per_kwh"), ("tariffs", "export_eur_per_kwh"),
          ("settlement", "imbalance_short_eur_per_kwh"),
          ("settlement", "imbalance_long_eur_per_kwh"), ("market", "curtailment_eur_per_kwh"),
          ("prices", "battery"), ("prices", "pv"), ("prices", "ev"), ("prices", "flexible_load"),
          ("*", "max_price_eur_per_kwh"),
          # Temperatures in degrees Celsius (a heat pump's COP).
          ("cop", "outdoor_c"), ("cop", "supply_c")}
#: Sections that a plain number may replace (a heat pump's COP: constant or from temperatures).
NUMBER_OR_SECTION = {"cop"}
#: Integer keys whose huge values still mean something (every n-th participant, n >= 1).
HUGE_INT_OK = {"every"}

NAN, INF = float("nan"), float("inf")
VALUES = [True, False, NAN, INF, -INF, -1, -2.5, -1e9, 0, 0.0, 1e308, 1e20, 10**30, 3, 0.5, 2,
          "text", "", "5", "1e3", "2016-06-06", "18:00", [], [1, 2], {}, {"x": 1}, None]


@dataclass(frozen=True)
class Mutation:
    """What was done to the file, and whether the result must be refused."""

    kind: str
    where: str
    new: object = None  # the value written (set, scale)
    must_refuse: bool = False

    def __str__(self) -> str:
        shown = "" if self.new is None and self.kind not in ("set", "scale") else repr(self.new)
        return f"{self.kind} {self.where} {shown}".strip()

    @property
    def section(self) -> str | None:
        """The top-level key that an error about this mutation names (None: not known)."""
        if self.kind in ("text", "duplicate-key", "swap", "hoist"):
            return None  # named by line, or by the keys that moved
        return self.where.split(".")[0].split("[")[0]


# --- the cached grids --------------------------------------------------------------------------

_real_load_grid = build_module.load_grid


@lru_cache(maxsize=None)
def _cached_grid(spec: str):
    return _real_load_grid(spec)


@pytest.fixture(autouse=True)
def cached_grids(monkeypatch):
    monkeypatch.setattr(build_module, "load_grid", _cached_grid)


# --- mutations ---------------------------------------------------------------------------------

def _paths(node, prefix=()):
    """Every (path, value) below a parsed YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,), value
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix + (i,), value
            yield from _paths(value, prefix + (i,))


def _get(data, path):
    for part in path:
        data = data[part]
    return data


def _parent_key(path) -> str:
    keys = [p for p in path[:-1] if isinstance(p, str)]
    return keys[-1] if keys else ""


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _signed(path) -> bool:
    names = [p for p in path if isinstance(p, str)]  # list positions take their list's name
    key, parent = names[-1] if names else "", names[-2] if len(names) > 1 else ""
    return (parent, key) in SIGNED or ("*", key) in SIGNED


def _refuse_set(path, old, new) -> bool:
    """Whether writing ``new`` where the file had ``old`` is nonsense the loader must refuse."""
    if _is_number(new) and not math.isfinite(new):
        return True
    if isinstance(old, dict) and path[-1] in NUMBER_OR_SECTION and _is_number(new):
        return new < 0
    if not _is_number(old):
        if isinstance(old, dict | list) and new is not None and not isinstance(new, dict | list):
            return True  # a section or list replaced by a scalar
        if old is not None and not isinstance(old, dict | list) and isinstance(new, dict | list):
            return True  # a scalar replaced by a section or list
        return False
    key = path[-1] if isinstance(path[-1], str) else _parent_key(path)
    if new is None:
        return False  # optional numbers may be left empty
    if not _is_number(new):
        return True  # booleans, text (also quoted numbers), dates and containers are no numbers
    if new < 0 and not _signed(path):
        return True
    if abs(new) >= 1e20 and not (isinstance(new, int) and key in HUGE_INT_OK):
        return True
    return False


def _typo(key: str, rng: random.Random) -> str:
    if len(key) < 2:
        return key + "x"
    i = rng.randrange(len(key) - 1)
    swapped = key[:i] + key[i + 1] + key[i] + key[i + 2:]
    return swapped if swapped != key else key + "s"


def mutate(text: str, rng: random.Random) -> tuple[str, Mutation]:
    """One random mutation of a scenario file's text."""
    data = yaml.safe_load(text)
    paths = list(_paths(data))
    kind = rng.choices(
        ["set", "delete", "unknown-key", "typo-key", "duplicate-key", "wrap", "hoist", "push",
         "swap", "scale", "text"],
        weights=[40, 8, 6, 6, 6, 4, 4, 4, 4, 6, 8])[0]
    out = copy.deepcopy(data)
    if kind == "set":
        path, old = rng.choice(paths)
        new = rng.choice(VALUES)
        _set(out, path, new)
        return _dump(out), Mutation(kind, _name(path), new, _refuse_set(path, old, new))
    if kind == "scale":
        numbers = [(p, v) for p, v in paths if _is_number(v)]
        if numbers:
            path, old = rng.choice(numbers)
            factor = rng.choice([-1, 0, 1e6, 1e-6, 1.5])
            new = old * factor
            _set(out, path, new)
            return _dump(out), Mutation(kind, _name(path), new, _refuse_set(path, old, new))
        kind = "delete"
    if kind == "delete":
        path, _ = rng.choice(paths)
        del _get(out, path[:-1])[path[-1]]
        return _dump(out), Mutation(kind, _name(path))
    mappings = [((), out)] + [(p, v) for p, v in _paths(out) if isinstance(v, dict)]
    if kind in ("unknown-key", "typo-key"):
        path, mapping = rng.choice(mappings)
        if kind == "typo-key" and mapping:
            key = rng.choice(list(mapping))
            new_key = _typo(str(key), rng)
            if new_key in mapping:
                new_key = str(key) + "_x"
            mapping[new_key] = mapping.pop(key)
        else:
            new_key = rng.choice(["intradya", "colour", "capacity", "zz_unknown", "Design"])
            if new_key in mapping:
                new_key += "_x"
            mapping[new_key] = rng.choice([True, 1, "x", None])
        return _dump(out), Mutation(kind, _name(path + (new_key,)), must_refuse=True)
    if kind == "duplicate-key":
        lines = text.splitlines()
        candidates = [i for i, line in enumerate(lines)
                      if line.strip() and not line.lstrip().startswith(("#", "-"))
                      and ":" in line and line.split(":")[0].strip().replace("_", "").isalnum()
                      and not line.rstrip().endswith((",", "[", "{"))]
        i = rng.choice(candidates)
        lines.insert(i + 1, lines[i])
        return "\n".join(lines) + "\n", Mutation(kind, f"line {i + 1}", must_refuse=True)
    if kind == "wrap":
        path, old = rng.choice(paths)
        _set(out, path, rng.choice([[old], {"value": old}]))
        return _dump(out), Mutation(kind, _name(path), must_refuse=not isinstance(old, dict | list)
                                    and old is not None)
    if kind in ("hoist", "push"):
        nested = [(p, v) for p, v in _paths(out) if isinstance(v, dict) and v
                  and isinstance(_get(out, p[:-1]), dict)]
        if nested:
            path, mapping = rng.choice(nested)
            parent = _get(out, path[:-1])
            if kind == "push":  # the section's keys one level down, under its own name
                parent[path[-1]] = {path[-1]: mapping}
                return _dump(out), Mutation(kind, _name(path), must_refuse=True)
            if not set(mapping) & set(parent):  # the section's keys one level up
                del parent[path[-1]]
                parent.update(mapping)
                return _dump(out), Mutation(kind, _name(path), must_refuse=True)
        kind = "swap"
    if kind == "swap":
        leaves = [(p, v) for p, v in paths if not isinstance(v, dict | list)]
        (p1, v1), (p2, v2) = rng.sample(leaves, 2)
        _set(out, p1, v2)
        _set(out, p2, v1)
        refuse = _refuse_set(p1, v1, v2) or _refuse_set(p2, v2, v1)
        return _dump(out), Mutation(kind, f"{_name(p1)} <-> {_name(p2)}", must_refuse=refuse)
    # Broken YAML text: a cut, an unbalanced bracket, a tab, an alias, a tag, garbage.
    i = rng.randrange(len(text))
    piece = rng.choice(["", "[", "{", "}", "\t", ": :", "*x", "&a ", "!!python/object:os.system ",
                        "\x00", "- ", "'", '"', "\n  bad", "%YAML 9\n"])
    broken = text[:i] + piece + (text[i:] if piece or rng.random() < 0.5 else "")
    return broken, Mutation("text", f"offset {i} {piece!r}")


def _set(data, path, value):
    _get(data, path[:-1])[path[-1]] = value


def _name(path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


class _Dumper(yaml.SafeDumper):
    """Quotes text that lemgrid's loader would read as a number (1e3: YAML 1.2 floats)."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT, list("-+0123456789."))


def _dump(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


# --- the oracle --------------------------------------------------------------------------------

def _allows_bool(annotation) -> bool:
    if annotation is bool:
        return True
    return any(_allows_bool(a) for a in typing.get_args(annotation))


def _bools_where_numbers_go(model: BaseModel, where: str = "") -> list[str]:
    """Fields holding a boolean although their type does not admit one (walks the config)."""
    found = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        items = value if isinstance(value, list) else (
            list(value.values()) if isinstance(value, dict) else [value])
        for item in items:
            if isinstance(item, BaseModel):
                found += _bools_where_numbers_go(item, f"{where}{name}.")
            elif isinstance(item, bool) and not _allows_bool(field.annotation) and not isinstance(
                    value, dict):
                found.append(where + name)
    return found


def insane(scenario) -> list[str]:
    """What is wrong with a loaded scenario (empty if nothing)."""
    problems = [f"boolean in number field {f}" for f in _bools_where_numbers_go(scenario.config)]
    parts = scenario.participants
    arrays = {"load_p_kw": parts.load_p_kw, "load_q_kvar": parts.load_q_kvar,
              "pv_p_kw": parts.pv_p_kw, "background_p_kw": scenario.background_p_kw,
              "background_q_kvar": scenario.background_q_kvar}
    for table in (parts.batteries, parts.windows):
        arrays.update({f"{type(table).__name__}.{k}": v for k, v in vars(table).items()
                       if isinstance(v, np.ndarray) and v.dtype.kind == "f"})
    problems += [f"{name} is not finite" for name, a in arrays.items() if not np.isfinite(a).all()]
    b = parts.batteries
    if len(b) and not ((b.capacity_kwh > 0).all() and (b.power_kw > 0).all()
                       and ((b.eta_charge > 0) & (b.eta_charge <= 1)).all()
                       and ((b.soc_min <= b.soc_initial) & (b.soc_initial <= b.soc_max)).all()):
        problems.append("a battery without positive ratings or with its state of charge outside "
                        "[soc_min, soc_max]")
    s = parts.windows
    if len(s) and not ((s.energy_kwh >= 0).all() and (s.power_kw > 0).all()):
        problems.append("a session with negative energy or no power")
    if (parts.pv_p_kw < -1e-9).any():
        problems.append("negative PV")
    return problems


def run_case(path: Path, text: str, mutation: Mutation) -> str | None:
    """None if the outcome is right, else what went wrong."""
    path.write_text(text, encoding="utf-8")
    try:
        scenario = load_scenario(path)
    except InputError as exc:
        message = str(exc)
        if not message.startswith(str(path)) or not (" line " in message or ": " in message[
                len(str(path)):]):
            return f"error does not name the file and a field or line: {message!r}"
        if mutation.section and mutation.section not in message[len(str(path)):]:
            return f"error does not name {mutation.section!r}: {message!r}"
        return None
    except Exception as exc:  # noqa: BLE001 - a traceback is what the fuzzer looks for
        return f"traceback {type(exc).__name__}: {exc}"
    if mutation.must_refuse:
        return "accepted nonsense"
    problems = insane(scenario)
    return "; ".join(problems) if problems else None


@pytest.mark.slow
@pytest.mark.parametrize("seed_file", SEEDS, ids=[p.stem for p in SEEDS])
def test_mutated_scenarios_are_loaded_sanely_or_refused(seed_file, tmp_path):
    text = seed_file.read_text(encoding="utf-8")
    load_scenario(seed_file)  # the example itself loads
    rng = random.Random(zlib.crc32(seed_file.name.encode()))
    failures = []
    for n in range(MUTATIONS_PER_FILE):
        mutated, mutation = mutate(text, rng)
        problem = run_case(tmp_path / f"{seed_file.stem}.yaml", mutated, mutation)
        if problem:
            failures.append(f"#{n} {mutation}: {problem}")
    assert not failures, f"{len(failures)} of {MUTATIONS_PER_FILE} mutations of " \
                         f"{seed_file.name}:\n" + "\n".join(failures)


def test_enough_cases():
    """The issue asks for at least 1,000 mutated scenario files."""
    assert len(SEEDS) * MUTATIONS_PER_FILE >= 1000
