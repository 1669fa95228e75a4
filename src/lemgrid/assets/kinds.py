"""Asset kinds: one protocol, one registry.

An asset kind (a heat pump, ...) is one module that declares, for its ``type`` in the scenario
file:

- ``Config``: its pydantic config model (a subclass of
  :class:`lemgrid.scenario.config.AssetBase`, unknown keys are errors);
- ``build``: one row of its column table from a config (profiles on the scenario's horizon);
- ``window`` / ``carry``: the table of one session (time series cut to it) and the table of the
  next session (initial state where this one ended);
- ``rule_dispatch``: how the owner runs it without a market (business-as-usual);
- ``lp_block``: its variables and constraints in the community LP
  (:mod:`lemgrid.market.community`, also used by optimising agents);
- ``offers``, ``budgets``, ``apply``: its flexibility (directions, sizes, baseline), the
  constraints linking its activations, and what an activation does to its schedule
  (:mod:`lemgrid.dso.flexibility`).

Column tables are frozen dataclasses of arrays with one row per asset; they have ``owner`` (the
participant's column) and ``name``; per-asset time series are arrays of shape (A, T), so that
:func:`lemgrid.assets.tables.take_rows` selects assets. A kind is registered once with
:func:`register_asset_kind`; the scenario format, the builder, the designs, the community LP and
the DSO's flexibility market read the registry.

The batteries, EVs, shiftable loads and PV of the scenario format are still served by their own
code paths (``Batteries``/``EnergyWindows`` tables) and are not in this registry yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from lemgrid.errors import InputError

if TYPE_CHECKING:
    from pydantic import BaseModel

#: Asset types served by the original code paths (scenario/build.py, agents/dispatch.py, ...).
BUILTIN_TYPES = ("battery", "ev", "flexible_load", "pv")
#: Modules of lemgrid that register a kind when imported.
_BUILTIN_KIND_MODULES = ("lemgrid.assets.heat_pump",)


@dataclass(eq=False)
class KindPlan:
    """How the assets of one kind run in a session.

    Attributes
    ----------
    owner : ndarray of int, shape (A,)
        Participant column of each asset.
    output_kw : ndarray, shape (Td, A)
        Net output of each asset (generation positive, consumption negative) [kW].
    state : ndarray, shape (Td, A)
        The kind's state at the end of each interval (e.g. stored heat [kWh_th]).
    """

    owner: np.ndarray
    output_kw: np.ndarray
    state: np.ndarray

    def copy(self) -> KindPlan:
        return KindPlan(self.owner, self.output_kw.copy(), self.state.copy())


@dataclass(frozen=True, eq=False)
class LPBlock:
    """A kind's part of a community LP.

    Attributes
    ----------
    draw : list of (ndarray of int (T, A), float)
        Variable blocks and coefficients whose sum is each asset's consumption [kW]
        (generation negative); the LP adds it to the owner's energy balance.
    read : callable
        ``read(solution) -> KindPlan`` (the owner column filled in by the LP).
    """

    draw: list[tuple[np.ndarray, float]]
    read: Any


@dataclass(frozen=True, eq=False)
class KindOffers:
    """Flexibility a kind offers: one row per (asset, interval, direction).

    ``baseline_kw`` is the asset's scheduled draw at the interval [kW] (delivery is measured
    against it); ``kw`` is the most that can be activated [kW]."""

    asset: np.ndarray
    interval: np.ndarray
    direction: np.ndarray
    kw: np.ndarray
    baseline_kw: np.ndarray

    def __len__(self) -> int:
        return len(self.kw)

    @classmethod
    def empty(cls) -> KindOffers:
        i, f = np.array([], int), np.array([])
        return cls(i, i, i, f, f)


@runtime_checkable
class AssetKind(Protocol):
    """What an asset kind declares (see the module docstring)."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    #: Default utilisation price of its flexibility [EUR/kWh] (scenario: ``dso.flexibility.prices``).
    flex_price_eur_per_kwh: ClassVar[float]

    def build(self, config: Any, owner: int, name: str, horizon: Any, loc: tuple) -> dict:
        """One row of the kind's table (column -> value; time series of shape (T,))."""

    def table(self, rows: list[dict]) -> Any:
        """The column table of the rows (``rows`` may be empty)."""

    def window(self, table: Any, start: int, stop: int) -> Any:
        """The table of intervals [start, stop) of the horizon."""

    def carry(self, table: Any, plan: KindPlan) -> Any:
        """The (full-horizon) table whose initial state is where ``plan`` ends."""

    def rule_dispatch(self, table: Any, net_kw: np.ndarray, dt_h: float) -> KindPlan:
        """Business-as-usual of a session's table; ``net_kw`` (Td, N) is the owners' net
        injection before the kind's assets [kW]."""

    def lp_block(self, lp: Any, table: Any, dt_h: float, final_state: np.ndarray | None
                 ) -> LPBlock:
        """Variables and constraints of the assets in ``lp`` (a
        :class:`lemgrid.market.lp.LinearProgram`); ``final_state`` (A,) is a state each asset
        must at least reach at the end (e.g. business-as-usual's), if given."""

    def offers(self, table: Any, plan: KindPlan, intervals: np.ndarray, dt_h: float
               ) -> KindOffers:
        """Up (+1: draw less / inject more) and down (-1) offers at ``intervals``."""

    def budgets(self, table: Any, plan: KindPlan, offers: KindOffers, dt_h: float
                ) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Rows ``sum(coef * activated_kw[offer]) <= upper`` linking activations of the same
        asset, as (offer positions in ``offers``, coefficients, upper)."""

    def apply(self, table: Any, plan: KindPlan, asset: np.ndarray, interval: np.ndarray,
              delta_kw: np.ndarray, dt_h: float) -> KindPlan:
        """The plan with activations carried out; ``delta_kw`` is direction x kW (up: the
        asset's output rises, i.e. it draws less)."""


class NoFlexibility:
    """Mix-in for a kind that offers no flexibility."""

    flex_price_eur_per_kwh: ClassVar[float] = 0.0

    def offers(self, table, plan, intervals, dt_h):
        return KindOffers.empty()

    def budgets(self, table, plan, offers, dt_h):
        return []

    def apply(self, table, plan, asset, interval, delta_kw, dt_h):
        if len(asset):
            raise InputError(f"{self.name} assets offer no flexibility; none can be activated")
        return plan


@dataclass
class _Registry:
    kinds: dict[str, AssetKind] = field(default_factory=dict)
    loaded: bool = False


_REGISTRY = _Registry()


def register_asset_kind(kind: AssetKind, *, replace: bool = False) -> AssetKind:
    """Register an asset kind under ``kind.name`` (its ``type`` in scenario files).

    Raises
    ------
    InputError
        If the name is taken (by another kind or a built-in type) and ``replace`` is false, or
        the kind lacks part of the protocol.
    """
    if not isinstance(kind, AssetKind):
        missing = [m for m in ("name", "Config", "flex_price_eur_per_kwh", "build", "table",
                               "window", "carry", "rule_dispatch", "lp_block", "offers",
                               "budgets", "apply") if not hasattr(kind, m)]
        raise InputError(f"asset kind {kind!r} lacks {', '.join(missing)}")
    name = kind.name
    if name in BUILTIN_TYPES or (name in _REGISTRY.kinds and not replace):
        raise InputError(f"asset kind {name!r} is already registered")
    type_field = kind.Config.model_fields.get("type")
    if type_field is None or getattr(type_field.annotation, "__args__", None) != (name,):
        raise InputError(f"asset kind {name!r}: its Config needs type: Literal[{name!r}]")
    _REGISTRY.kinds[name] = kind
    return kind


def unregister_asset_kind(name: str) -> None:
    """Remove a registered kind (tests registering toy kinds clean up with it)."""
    _REGISTRY.kinds.pop(name, None)


def _load_builtin() -> None:
    if not _REGISTRY.loaded:
        _REGISTRY.loaded = True
        import importlib

        for module in _BUILTIN_KIND_MODULES:
            importlib.import_module(module)


def asset_kinds() -> dict[str, AssetKind]:
    """All registered kinds by name (registration order)."""
    _load_builtin()
    return dict(_REGISTRY.kinds)


def asset_kind(name: str) -> AssetKind:
    """The kind registered under ``name`` (InputError naming the known kinds if none)."""
    kinds = asset_kinds()
    if name not in kinds:
        raise InputError(f"unknown asset kind {name!r}; known: {', '.join(kinds) or 'none'}")
    return kinds[name]


def all_type_names() -> list[str]:
    """Asset types a scenario may use: the built-in ones and every registered kind."""
    return [*BUILTIN_TYPES, *asset_kinds()]


def kinds_to_owners(kinds: dict[str, KindPlan], n_participants: int, n_intervals: int
                    ) -> np.ndarray:
    """Net output of all kinds' assets per owner (Td, N) [kW]."""
    out = np.zeros((n_intervals, n_participants))
    for plan in kinds.values():
        np.add.at(out.T, plan.owner, plan.output_kw.T)  # asset k's column into its owner's
    return out
