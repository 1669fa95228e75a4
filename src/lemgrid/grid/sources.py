"""Where grids come from: ``simbench:CODE``, ``ieee33``, a pandapower JSON file, or any
source registered with :func:`register_grid_source`.

Converting a SimBench grid and its year of profiles takes a few seconds (pandapower and simbench
imports, CSV parsing); the result is cached as plain arrays in ``$LEMGRID_CACHE_DIR`` (default
``~/.cache/lemgrid``), keyed by the code and the versions of simbench, pandapower and lemgrid's
format, so later loads take milliseconds. Delete the folder to rebuild.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from lemgrid.errors import InputError
from lemgrid.grid.network import FORMAT_VERSION, Network
from lemgrid.grid.profiles import GridProfiles

@dataclass(frozen=True, eq=False)
class Grid:
    """A network and, where the source has them, its element profiles."""

    spec: str
    network: Network
    profiles: GridProfiles | None


def cache_dir() -> Path:
    """Folder of lemgrid's converted-grid cache."""
    root = os.environ.get("LEMGRID_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lemgrid"
    return Path(root)


@lru_cache(maxsize=1)
def simbench_codes() -> tuple[str, ...]:
    import simbench as sb

    return tuple(sb.collect_all_simbench_codes())


@runtime_checkable
class GridSource(Protocol):
    """Where a kind of grid comes from: one protocol, one registry.

    A source recognises its specs (``parse``), reads the pandapower net behind one
    (``load_net``) and says whether its converted grid may be cached (``cache_key``). The
    scenario's ``grid:``, ``lemgrid powerflow GRID`` and :func:`load_grid` ask the registered
    sources in order; :func:`register_grid_source` adds one from outside the package.
    """

    #: Short name, e.g. ``"simbench"``.
    name: str
    #: How a spec of this source is written, for error messages, e.g. ``"'ieee33'"``.
    forms: str

    def parse(self, spec: str) -> str | None:
        """The source's value for ``spec`` (a code, a path, ``""``), or None if not its spec.

        Raises InputError for a spec that is this source's but malformed."""
        ...

    def load_net(self, value: str) -> Any:
        """The pandapower net of ``value`` (profiles in ``net.profiles``, SimBench-style, if
        the source has them)."""
        ...

    def cache_key(self, value: str) -> str | None:
        """A file-name-safe key under which the converted grid may be cached, or None."""
        ...


class SimBenchSource:
    """``simbench:CODE``: any SimBench grid, offline from the ``simbench`` package, with its
    year of 15-minute profiles (Meinecke et al., Energies 13(12), 3290, 2020)."""

    name = "simbench"
    forms = "'simbench:CODE' (e.g. simbench:1-LV-rural1--0-sw)"

    def parse(self, spec: str) -> str | None:
        if not spec.lower().startswith("simbench:"):
            return None
        code = spec.split(":", 1)[1].strip()
        if not code:
            raise InputError(f"grid {spec!r}: missing SimBench code after 'simbench:'")
        return code

    def load_net(self, value: str) -> Any:
        import simbench as sb

        codes = simbench_codes()
        if value not in codes:
            close = difflib.get_close_matches(value, codes, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InputError(f"unknown SimBench code {value!r}{hint}")
        return sb.get_simbench_net(value)

    def cache_key(self, value: str) -> str | None:
        # Converting a SimBench grid and its year of profiles takes seconds: worth caching.
        return "-".join(["simbench", value.replace("/", "_"), f"sb{version('simbench')}",
                         f"pp{version('pandapower')}"])


class IEEE33Source:
    """``ieee33``: Baran & Wu's 33-bus feeder (IEEE Trans. Power Delivery 4(2), 1989), buses
    named "1".."33" as in the paper."""

    name = "ieee33"
    forms = "'ieee33'"

    def parse(self, spec: str) -> str | None:
        return "" if spec.lower() in {"ieee33", "ieee-33", "case33bw"} else None

    def load_net(self, value: str) -> Any:
        import pandapower.networks as pn

        net = pn.case33bw()
        # Baran & Wu number their buses 1..33; pandapower's case uses 0..32.
        net.bus["name"] = [str(i + 1) for i in range(len(net.bus))]
        return net

    def cache_key(self, value: str) -> str | None:
        return None


class PandapowerJSONSource:
    """A pandapower JSON file (``pandapower.to_json``); its broken contents are input errors."""

    name = "json"
    forms = "a pandapower .json file"

    def parse(self, spec: str) -> str | None:
        return spec if spec.lower().endswith(".json") else None

    def load_net(self, value: str) -> Any:
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(2, "no such grid file", str(path))
        import pandapower as pp

        try:
            net = pp.from_json(str(path))
        except Exception as exc:  # noqa: BLE001 - pandapower's reader fails in many ways on foreign JSON
            raise InputError(f"{path}: not a pandapower JSON network "
                             f"({type(exc).__name__}: {exc})") from None
        _check_tables(net, path)
        return net

    def cache_key(self, value: str) -> str | None:
        return None  # a user's file may change under the same name


_SOURCES: dict[str, GridSource] = {
    source.name: source for source in (SimBenchSource(), IEEE33Source(), PandapowerJSONSource())}


def register_grid_source(source: GridSource) -> GridSource:
    """Add a grid source to the registry (replacing one of the same name); returns it.

    Raises
    ------
    TypeError
        If ``source`` lacks ``name``, ``forms``, ``parse``, ``load_net`` or ``cache_key``.
    """
    if not isinstance(source, GridSource):
        missing = [a for a in ("name", "forms", "parse", "load_net", "cache_key")
                   if not hasattr(source, a)]
        raise TypeError(f"a grid source needs {', '.join(missing)}: {source!r}")
    _SOURCES[source.name] = source
    return source


def grid_sources() -> dict[str, GridSource]:
    """The registered grid sources by name, in the order they are asked."""
    return dict(_SOURCES)


def grid_forms() -> str:
    """How grids are written, for error messages and help."""
    return ", ".join(source.forms for source in _SOURCES.values())


def parse_grid_spec(spec: str) -> tuple[str, str]:
    """Split a grid spec into (source name, value), e.g. ('simbench', CODE), ('ieee33', ''),
    ('json', path).

    Raises
    ------
    InputError
        No registered source reads ``spec``.
    """
    text = str(spec).strip()
    for source in _SOURCES.values():
        value = source.parse(text)
        if value is not None:
            return source.name, value
    raise InputError(f"unknown grid {spec!r}; use {grid_forms()}")


def load_pandapower_net(spec: str) -> Any:
    """The pandapower net behind a grid spec (slow path: imports pandapower / simbench)."""
    name, value = parse_grid_spec(spec)
    return _SOURCES[name].load_net(value)


#: Tables of a pandapower net that lemgrid reads.
_TABLES = ("bus", "ext_grid", "line", "trafo", "load", "sgen", "storage", "gen")


def _check_tables(net, path: Path) -> None:
    """A JSON file read by pandapower is a net with the tables lemgrid reads (pandas frames)."""
    import pandapower as pp

    if not isinstance(net, pp.pandapowerNet):
        raise InputError(f"{path}: not a pandapower JSON network (it holds a "
                         f"{type(net).__name__})")
    bad = [t for t in _TABLES if not isinstance(net.get(t), pd.DataFrame)]
    if bad:
        raise InputError(f"{path}: not a pandapower JSON network (table {bad[0]!r} is missing "
                         "or not a table)")


def _profiles_of(net, network: Network) -> GridProfiles | None:
    profiles = getattr(net, "profiles", None)
    if not isinstance(profiles, dict) or not len(profiles.get("load", ())):
        return None
    from lemgrid.grid.profiles import simbench_profiles

    return simbench_profiles(net, network)


def grid_from_pandapower(net, spec: str) -> Grid:
    """Convert a pandapower net (and SimBench-style profiles, if it has them) into a Grid."""
    from lemgrid.grid.convert import network_from_pandapower

    network = network_from_pandapower(net, spec)
    return Grid(spec=spec, network=network, profiles=_profiles_of(net, network))


def _checked_grid(net, spec: str) -> Grid:
    """Convert a source's net: what makes it unusable is an input error naming the spec."""
    import pandapower as pp

    try:
        return grid_from_pandapower(net, spec)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, ArithmeticError,
            pp.LoadflowNotConverged) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{spec}: not a usable pandapower network ({type(exc).__name__}: "
                         f"{exc})") from None


def _cache_file(name: str, value: str) -> Path | None:
    key = _SOURCES[name].cache_key(value)
    return None if key is None else cache_dir() / "grids" / f"{key}-f{FORMAT_VERSION}.npz"


def _save(grid: Grid, path: Path) -> None:
    arrays = grid.network.to_arrays("network.")
    arrays["spec"] = np.array(grid.spec)
    if grid.profiles is not None:
        p = grid.profiles
        arrays["profiles.time_ns"] = p.time_index.asi8  # UTC instants
        arrays["profiles.tz"] = np.array(str(p.time_index.tz) if p.time_index.tz else "")
        for name, array in p._map(lambda a: a).items():
            arrays[f"profiles.{name}"] = array
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so that concurrent processes never read a half-written file.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp.npz", delete=False) as tmp:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub: **kwds as allow_pickle
    os.replace(tmp.name, path)


def _load(path: Path) -> Grid:
    with np.load(path, allow_pickle=False) as data:
        network = Network.from_arrays(data, "network.")
        profiles = None
        if "profiles.time_ns" in data:
            tz = str(data["profiles.tz"])
            index = pd.DatetimeIndex(data["profiles.time_ns"])
            if tz:
                index = index.tz_localize("UTC").tz_convert(tz)
            # freq is settable on a DatetimeIndex (pandas-stubs say it is read-only).
            freq = pd.infer_freq(index[:3]) if len(index) >= 3 else None
            index.freq = freq  # type: ignore[misc,assignment]
            profiles = GridProfiles(
                time_index=index,
                load_p_kw=data["profiles.load_p_kw"],
                load_q_kvar=data["profiles.load_q_kvar"],
                sgen_p_kw=data["profiles.sgen_p_kw"],
                storage_p_kw=data["profiles.storage_p_kw"],
            )
        return Grid(spec=str(data["spec"]), network=network, profiles=profiles)


def load_grid(spec: str, *, use_cache: bool = True) -> Grid:
    """Load a grid by spec.

    Parameters
    ----------
    spec : str
        ``simbench:CODE`` (any SimBench code, offline, with its year of 15-min profiles),
        ``ieee33`` (Baran & Wu's 33-bus feeder, buses "1".."33"), or a pandapower JSON file.
    use_cache : bool
        Read/write the converted-grid cache (SimBench grids only).

    Raises
    ------
    InputError
        Unknown spec or SimBench code, malformed file.
    FileNotFoundError
        A JSON path that does not exist.
    """
    kind, value = parse_grid_spec(spec)
    cache = _cache_file(kind, value) if use_cache else None
    if cache is not None and cache.is_file():
        try:
            return _load(cache)
        except (ValueError, KeyError, OSError):
            pass  # stale or damaged cache: rebuild below
    net = _SOURCES[kind].load_net(value)
    grid = _checked_grid(net, spec)
    if cache is not None:
        try:
            _save(grid, cache)
        except OSError:
            pass  # a read-only home is no reason to fail; the next run converts again
    return grid
