"""lemgrid: grid-aware local electricity markets.

The public API (imported lazily, so ``import lemgrid`` stays light: pandas, pandapower, HiGHS
load when a function is first used):

- :func:`load_scenario` (a YAML file, a mapping, or a pandapower net),
- :func:`simulate` and :func:`compare` (market designs of :mod:`lemgrid.designs`),
- :func:`powerflow` (AC power flow of a grid or scenario over its horizon),
- :func:`clear` (a batch of orders: uniform, pay-as-bid, continuous),
- :func:`render_report` (HTML report of a simulation or a comparison),

and the error classes. Results are labelled tables (pandas): intervals as tz-aware timestamps,
participant ids, bus and branch names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lemgrid.errors import InfeasibleError, InputError, NotBuiltError

if TYPE_CHECKING:
    from lemgrid.api import Comparison, clear, compare, load_scenario, powerflow, render_report, \
        simulate

__version__ = "0.1.0"

#: Public name -> module that defines it (imported on first use).
_LAZY = {name: "lemgrid.api" for name in (
    "load_scenario", "simulate", "compare", "powerflow", "clear", "render_report", "Comparison")}

__all__ = ["load_scenario", "simulate", "compare", "powerflow", "clear", "render_report",
           "Comparison", "InputError", "InfeasibleError", "NotBuiltError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lemgrid' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
