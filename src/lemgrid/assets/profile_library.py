"""SimBench's library of standard profiles (households, trade, agriculture, EV charging, heat
pumps, PV, wind, ...), for elements and assets that have no profile of their own.

Values are relative to the element's rated power (SimBench's convention: absolute power =
rated power x profile value), a year of 15-minute values starting 2016-01-01 00:00 local time
(rows as in :func:`lemgrid.grid.profiles.simbench_time_index`: German time with daylight saving).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from lemgrid.errors import InputError

_DATASET = "1-complete_data-mixed-all-0-sw"


def _dataset_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("simbench")
    if spec is None or spec.origin is None:
        raise InputError("the simbench package is not installed")
    return Path(spec.origin).parent / "networks" / _DATASET


@lru_cache(maxsize=1)
def _columns() -> dict[str, tuple[str, str]]:
    """Profile name -> (csv file, column); reactive-power columns are keyed 'NAME:q'."""
    out: dict[str, tuple[str, str]] = {}
    for file in ("LoadProfile.csv", "RESProfile.csv"):
        with open(_dataset_dir() / file, encoding="utf-8") as fh:
            header = fh.readline().strip().split(";")
        for column in header[1:]:
            if column.endswith("_pload"):
                out[column.removesuffix("_pload")] = (file, column)
            elif column.endswith("_qload"):
                out[column.removesuffix("_qload") + ":q"] = (file, column)
            else:
                out[column] = (file, column)
    return out


def profile_names() -> list[str]:
    """Names of all standard profiles (e.g. 'H0-A', 'L1-A', 'PV3', 'HLS_A_11.0', 'Air_Parallel_1')."""
    return sorted(k for k in _columns() if not k.endswith(":q"))


@lru_cache(maxsize=64)
def standard_profile(name: str, reactive: bool = False) -> np.ndarray:
    """A standard profile, shape (35136,), 15-minute values of 2016.

    Parameters
    ----------
    name : str
        Profile name (see :func:`profile_names`).
    reactive : bool
        The reactive-power profile of a load profile instead of the active one (zeros for
        generation profiles, which SimBench gives at unity power factor).

    Raises
    ------
    InputError
        For an unknown profile name.
    """
    from lemgrid.grid.sources import cache_dir

    columns = _columns()
    if name not in columns:
        import difflib

        close = difflib.get_close_matches(name, profile_names(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown SimBench profile {name!r}{hint}")
    if reactive:
        if name + ":q" not in columns:
            return np.zeros_like(standard_profile(name))
        name = name + ":q"
    file, column = columns[name]
    cached = cache_dir() / "profiles" / f"{name.replace('/', '_').replace(':', '_')}.npy"
    if cached.is_file():
        return np.load(cached)
    import pandas as pd

    values = pd.read_csv(_dataset_dir() / file, sep=";", usecols=[column])[column].to_numpy(float)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{np.random.randint(1 << 30)}.tmp.npy")
        np.save(tmp, values)
        tmp.replace(cached)
    except OSError:
        pass
    return values
