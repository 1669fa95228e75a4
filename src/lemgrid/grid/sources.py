"""Where grids come from: ``simbench:CODE``, ``ieee33`` or a pandapower JSON file.

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

import numpy as np
import pandas as pd

from lemgrid.errors import InputError
from lemgrid.grid.network import FORMAT_VERSION, Network
from lemgrid.grid.profiles import GridProfiles

GRID_FORMS = "'simbench:CODE' (e.g. simbench:1-LV-rural1--0-sw), 'ieee33', or a pandapower .json file"


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


def parse_grid_spec(spec: str) -> tuple[str, str]:
    """Split a grid spec into (kind, value): ('simbench', CODE), ('ieee33', ''), ('json', path)."""
    text = str(spec).strip()
    if text.lower().startswith("simbench:"):
        code = text.split(":", 1)[1].strip()
        if not code:
            raise InputError(f"grid {spec!r}: missing SimBench code after 'simbench:'")
        return "simbench", code
    if text.lower() in {"ieee33", "ieee-33", "case33bw"}:
        return "ieee33", ""
    if text.lower().endswith(".json"):
        return "json", text
    raise InputError(f"unknown grid {spec!r}; use {GRID_FORMS}")


def load_pandapower_net(spec: str):
    """The pandapower net behind a grid spec (slow path: imports pandapower / simbench)."""
    kind, value = parse_grid_spec(spec)
    if kind == "simbench":
        import simbench as sb

        codes = simbench_codes()
        if value not in codes:
            close = difflib.get_close_matches(value, codes, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InputError(f"unknown SimBench code {value!r}{hint}")
        return sb.get_simbench_net(value)
    if kind == "ieee33":
        import pandapower.networks as pn

        net = pn.case33bw()
        # Baran & Wu number their buses 1..33; pandapower's case uses 0..32.
        net.bus["name"] = [str(i + 1) for i in range(len(net.bus))]
        return net
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


def _grid_from_file(net, path: str) -> Grid:
    """Convert a net read from a user's file: its broken contents are input errors."""
    import pandapower as pp

    try:
        return grid_from_pandapower(net, path)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, ArithmeticError,
            pp.LoadflowNotConverged) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: not a usable pandapower network ({type(exc).__name__}: "
                         f"{exc})") from None


def _cache_file(kind: str, value: str) -> Path | None:
    if kind != "simbench":
        return None
    key = "-".join([
        value.replace("/", "_"), f"sb{version('simbench')}", f"pp{version('pandapower')}",
        f"f{FORMAT_VERSION}",
    ])
    return cache_dir() / "grids" / f"simbench-{key}.npz"


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
    net = load_pandapower_net(spec)
    if kind == "json":
        grid = _grid_from_file(net, value)
    else:
        grid = grid_from_pandapower(net, spec)
    if cache is not None:
        try:
            _save(grid, cache)
        except OSError:
            pass  # a read-only home is no reason to fail; the next run converts again
    return grid
