"""Asset kinds: one protocol, one registry.

An asset kind (a battery, EV and shiftable-load windows, a heat pump, ...) is one module that
declares, for the ``type`` (or ``types``) it serves in the scenario file:

- ``Config``: its pydantic config model (a subclass of
  :class:`lemgrid.scenario.config.AssetBase`, unknown keys are errors);
- ``build``: the row (or rows) of its column table from a config (profiles on the scenario's
  horizon);
- ``window`` / ``carry``: the table of one session (time series cut to it) and the table of the
  next session (initial state where this one ended);
- ``rule_dispatch``: how the owner runs it without a market (business-as-usual);
- ``lp_block``: its variables and constraints in the community LP
  (:mod:`lemgrid.market.community`, also used by optimising agents);
- ``offers``, ``budgets``, ``apply``: its flexibility (directions, sizes, baseline), the
  constraints linking its activations, and what an activation does to its schedule
  (:mod:`lemgrid.dso.flexibility`).

Optional class attributes: ``types`` (the scenario types and offer labels the kind serves,
default ``(name,)``; the EV and shiftable-load kind serves two), ``rule_order`` (business-as-usual
runs the kinds by ascending order; assets that follow the owner's remaining net, such as
self-consumption batteries, run last) and ``series`` (per-owner columns the kind reports in
``participant_intervals``).

Column tables are frozen dataclasses of arrays with one row per asset; they have ``owner`` (the
participant's column) and ``name``; per-asset time series are arrays of shape (A, T), so that
:func:`lemgrid.assets.tables.take_rows` selects assets. A kind is registered once with
:func:`register_asset_kind`; the scenario format, the builder, the designs, the community LP,
the runner and the DSO's flexibility market loop over the registry. The built-in kinds are
:mod:`lemgrid.assets.battery`, :mod:`lemgrid.assets.windows` and
:mod:`lemgrid.assets.heat_pump`. PV is not a kind: it is each participant's generation profile,
curtailed through ``AssetPlan.curtailment_kw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from lemgrid.errors import InputError

if TYPE_CHECKING:
    from pydantic import BaseModel

#: Asset types whose config models are part of the scenario format
#: (:mod:`lemgrid.scenario.config`); all but PV are served by built-in kinds.
BUILTIN_TYPES = ("battery", "ev", "flexible_load", "pv")
#: Modules of lemgrid that register a kind when imported (in this order: the order of the
#: kinds' variables in the LP and of their offers).
_BUILTIN_KIND_MODULES = ("lemgrid.assets.battery", "lemgrid.assets.windows",
                         "lemgrid.assets.heat_pump")


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
    detail : dict[str, ndarray (Td, A)]
        Kind-specific series (e.g. a battery's ``charge_kw`` and ``discharge_kw`` from the LP).
    """

    owner: np.ndarray
    output_kw: np.ndarray
    state: np.ndarray
    detail: dict[str, np.ndarray] = field(default_factory=dict)

    def copy(self) -> KindPlan:
        return KindPlan(self.owner, self.output_kw.copy(), self.state.copy(),
                        {k: v.copy() for k, v in self.detail.items()})


@dataclass(frozen=True, eq=False)
class LPContext:
    """What the community LP tells a kind's ``lp_block`` besides its table.

    Attributes
    ----------
    ids : ndarray of str, shape (N,)
        The members' ids (errors name the owner).
    n_intervals : int
        Intervals of the LP (T).
    curtailment_eur_per_kwh : float
        Value of energy lost (curtailed PV, conversion losses) [EUR/kWh].
    wear_eur_per_kwh : float
        Wear cost of storage per kWh charged or discharged [EUR/kWh].
    forced : ndarray of int, shape (m, 2)
        (interval, asset) pairs where the kind's ``conflicts`` asked for an integer mode.
    fixed_modes : ndarray of bool, shape (m,), optional
        Modes of ``forced`` chosen by the MILP (then fixed in the LP re-solved for prices).
    """

    ids: np.ndarray
    n_intervals: int
    curtailment_eur_per_kwh: float = 0.0
    wear_eur_per_kwh: float = 0.0
    forced: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), int))
    fixed_modes: np.ndarray | None = None


@dataclass(eq=False)
class LPBlock:
    """A kind's part of a community LP.

    Attributes
    ----------
    draw : list of (ndarray of int (T, A), float) or (ndarray of int (K,), float, (t, a))
        Variable blocks and coefficients whose sum is each asset's consumption [kW]
        (generation negative); the LP adds it to the owner's energy balance. A block of any
        shape names the interval ``t`` and asset ``a`` of each variable (arrays (K,)).
    read : callable
        ``read(solution) -> KindPlan`` (the owner column filled in by the LP).
    constrain : callable, optional
        ``constrain()`` adds the kind's constraint rows; called after the owners' balance rows
        are in the LP (variables first, rows after, so that every kind's columns and rows keep
        their place in the LP). ``lp_block`` may also add its rows itself.
    cost : callable, optional
        ``cost(solution) -> float``: the block's part of the objective [EUR] that the community's
        welfare counts (e.g. valued conversion losses and wear).
    conflicts : callable, optional
        ``conflicts(solution) -> ndarray (m, 2)`` of (interval, asset): where the LP relaxation
        did something the asset cannot (a battery charging and discharging at once). The LP is
        then solved again as a MILP with an integer mode there (``LPContext.forced``).
    modes : ndarray of int, optional
        The integer mode variables (one per ``LPContext.forced`` pair) when there are some.
    """

    draw: list[tuple[np.ndarray, float] | tuple[np.ndarray, float, tuple[np.ndarray, np.ndarray]]]
    read: Any
    constrain: Any = None
    cost: Any = None
    conflicts: Any = None
    modes: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class KindOffers:
    """Flexibility a kind offers: one row per (asset, interval, direction).

    ``baseline_kw`` is the asset's scheduled power at the interval [kW] (delivery is measured
    against it); ``kw`` is the most that can be activated [kW]; ``label`` the offer's kind in the
    offer tables and its price key (one of the kind's ``types``; default: the kind's name)."""

    asset: np.ndarray
    interval: np.ndarray
    direction: np.ndarray
    kw: np.ndarray
    baseline_kw: np.ndarray
    label: np.ndarray | None = None

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

    def build(self, config: Any, owner: int, name: str, horizon: Any, loc: tuple
              ) -> dict | list[dict]:
        """The row (or rows, e.g. one per daily window) of the kind's table from one asset
        config (column -> value; time series of shape (T,))."""

    def table(self, rows: list[dict]) -> Any:
        """The column table of the rows (``rows`` may be empty)."""

    def window(self, table: Any, start: int, stop: int) -> Any:
        """The table of intervals [start, stop) of the horizon."""

    def carry(self, table: Any, plan: KindPlan) -> Any:
        """The (full-horizon) table whose initial state is where ``plan`` ends."""

    def rule_dispatch(self, table: Any, net_kw: np.ndarray, dt_h: float) -> KindPlan:
        """Business-as-usual of a session's table; ``net_kw`` (Td, N) is the owners' net
        injection before the kind's assets [kW]."""

    def lp_block(self, lp: Any, table: Any, dt_h: float, final_state: np.ndarray | None,
                 context: LPContext) -> LPBlock:
        """Variables and constraints of the assets in ``lp`` (a
        :class:`lemgrid.market.lp.LinearProgram`); ``final_state`` (A,) is the state each asset
        must reach at the end (e.g. business-as-usual's; the kind says whether exactly or at
        least), if given. Raises InfeasibleError for assets no schedule can serve."""

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
    taken = {t for other in _REGISTRY.kinds.values() if other.name != name
             for t in kind_types(other)}
    clash = [t for t in kind_types(kind) if t in taken or t in BUILTIN_TYPES]
    if clash or (name in _REGISTRY.kinds and not replace):
        raise InputError(f"asset kind {name!r} is already registered"
                         + (f" (type {clash[0]!r} is served by another kind)" if clash else ""))
    type_field = kind.Config.model_fields.get("type")
    if type_field is None or getattr(type_field.annotation, "__args__", None) != (name,):
        raise InputError(f"asset kind {name!r}: its Config needs type: Literal[{name!r}]")
    _REGISTRY.kinds[name] = kind
    return kind


def _register_builtin(kind: AssetKind) -> AssetKind:
    """Register a kind of lemgrid whose config models are part of the scenario format (their
    ``type`` is validated by :mod:`lemgrid.scenario.config`)."""
    _REGISTRY.kinds[kind.name] = kind
    return kind


def kind_types(kind: AssetKind) -> tuple[str, ...]:
    """The scenario types (and offer labels) a kind serves."""
    return tuple(getattr(kind, "types", (kind.name,)))


def kind_for_type(type_name: str) -> AssetKind:
    """The registered kind serving a scenario ``type`` (InputError if none)."""
    for kind in asset_kinds().values():
        if type_name in kind_types(kind):
            return kind
    raise InputError(f"no asset kind serves type {type_name!r}; known: "
                     f"{', '.join(t for k in asset_kinds().values() for t in kind_types(k))}")


def rule_order(kinds: dict[str, Any]) -> list[str]:
    """Names of ``kinds`` in the order business-as-usual runs them (``rule_order``, then
    registration order)."""
    return sorted(kinds, key=lambda name: getattr(asset_kind(name), "rule_order", 0))


def offer_labels() -> list[str]:
    """Labels of the offers registered kinds can make (their ``types``)."""
    return [t for kind in asset_kinds().values() for t in kind_types(kind)]


def window_tables(kinds: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """The kinds' tables of intervals [start, stop) of the horizon."""
    return {name: asset_kind(name).window(table, start, stop) for name, table in kinds.items()}


def carry_tables(kinds: dict[str, Any], plans: dict[str, KindPlan]) -> dict[str, Any]:
    """The kinds' full-horizon tables with the state where a session's plans end."""
    return {name: asset_kind(name).carry(table, plans[name]) if name in plans else table
            for name, table in kinds.items()}


def owner_series(kinds: dict[str, Any], plans: dict[str, KindPlan], n_participants: int,
                 n_intervals: int) -> dict[str, np.ndarray]:
    """The per-owner series every registered kind reports (``series``), (Td, N) each; zeros for
    kinds without assets, so that the columns do not depend on the scenario."""
    out: dict[str, np.ndarray] = {}
    for name, kind in asset_kinds().items():
        series = getattr(kind, "series", None)
        if series is None:
            continue
        columns = (series(kinds[name], plans[name]) if name in plans and name in kinds
                   else None)
        for column in getattr(kind, "series_names", ()):
            total = np.zeros((n_intervals, n_participants))
            if columns is not None:
                np.add.at(total.T, plans[name].owner, columns[column].T)
            out[column] = total
    return out


def unregister_asset_kind(name: str) -> None:
    """Remove a registered kind (tests registering toy kinds clean up with it)."""
    _REGISTRY.kinds.pop(name, None)


def _load_builtin() -> None:
    if not _REGISTRY.loaded:
        _REGISTRY.loaded = True
        import importlib

        for module in _BUILTIN_KIND_MODULES:
            importlib.import_module(module)


#: Names of lemgrid's own kinds, first in every listing in this order (whatever the import order).
_BUILTIN_KIND_NAMES = ("battery", "energy_window", "heat_pump")


def asset_kinds() -> dict[str, AssetKind]:
    """All registered kinds by name: lemgrid's own first (battery, energy_window, heat_pump),
    then the others in registration order."""
    _load_builtin()
    kinds = _REGISTRY.kinds
    own = [name for name in _BUILTIN_KIND_NAMES if name in kinds]
    return {**{name: kinds[name] for name in own},
            **{name: kind for name, kind in kinds.items() if name not in own}}


def asset_kind(name: str) -> AssetKind:
    """The kind registered under ``name`` (InputError naming the known kinds if none)."""
    kinds = asset_kinds()
    if name not in kinds:
        raise InputError(f"unknown asset kind {name!r}; known: {', '.join(kinds) or 'none'}")
    return kinds[name]


def all_type_names() -> list[str]:
    """Asset types a scenario may use: the built-in ones and every registered kind's."""
    return [*BUILTIN_TYPES, *(t for t in offer_labels() if t not in BUILTIN_TYPES)]


def kinds_to_owners(kinds: dict[str, KindPlan], n_participants: int, n_intervals: int
                    ) -> np.ndarray:
    """Net output of all kinds' assets per owner (Td, N) [kW]."""
    out = np.zeros((n_intervals, n_participants))
    for plan in kinds.values():
        np.add.at(out.T, plan.owner, plan.output_kw.T)  # asset k's column into its owner's
    return out
