"""Market designs: one protocol and one registry.

A design is one module (or any object) with

- ``name``: what a scenario's ``market.design`` and ``--design`` call it;
- ``summary``: one line for the docs table and ``--help``;
- ``Options``: a pydantic model of its ``market:`` options, a subclass of
  :class:`lemgrid.scenario.config.DesignOptions` (unknown keys are errors);
- ``clear_session(session, options)``: one day-ahead session (or the whole horizon, for
  ``optimize``) to a :class:`lemgrid.sim.designs.SessionOutcome`;

and optionally ``local_market = False`` for a design without a local market, whose metered
energy is settled with the retailer (``none``), and ``fixed_options``, options the design always
has whatever the scenario says (``community-constrained``: ``network: constrained``). The built-in designs are the modules listed in
``BUILTIN``; :func:`register` adds one from outside the package::

    import lemgrid.designs
    lemgrid.designs.register(my_design_module)

The simulator, ``optimize``, ``compare``, the command line and the docs table read the registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from lemgrid.errors import InputError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from lemgrid.scenario import Scenario
    from lemgrid.session import DayAheadSession, SessionOutcome

#: The built-in designs: name -> module. A new built-in design is one module and one line here.
BUILTIN: dict[str, str] = {
    "none": "lemgrid.designs.none",
    "uniform": "lemgrid.designs.uniform",
    "pay-as-bid": "lemgrid.designs.pay_as_bid",
    "continuous": "lemgrid.designs.continuous",
    "community": "lemgrid.designs.community",
    "community-constrained": "lemgrid.designs.community_constrained",
    "p2p": "lemgrid.designs.p2p",
}

_registered: dict[str, MarketDesign] = {}
_Options = TypeVar("_Options", bound="BaseModel")


@runtime_checkable
class MarketDesign(Protocol):
    """What a market design declares (a module satisfies it with module-level names)."""

    name: str
    summary: str
    Options: type[BaseModel]

    def clear_session(self, session: DayAheadSession, options: Any) -> SessionOutcome:
        """Clear one session: positions of every participant and how their assets run."""
        ...


def register(design: MarketDesign) -> MarketDesign:
    """Add a design to the registry (replacing one of the same name); returns it.

    Raises
    ------
    TypeError
        If ``design`` lacks ``name``, ``summary``, ``Options`` or ``clear_session``, or its
        ``Options`` has no ``design`` field.
    """
    missing = [a for a in ("name", "summary", "Options", "clear_session")
               if not hasattr(design, a)]
    if missing:
        raise TypeError(f"a market design needs {', '.join(missing)}: {design!r}")
    if "design" not in getattr(design.Options, "model_fields", {}):
        raise TypeError(f"design {design.name!r}: Options must derive from "
                        "lemgrid.scenario.config.DesignOptions (it has no 'design' field)")
    _registered[design.name] = design
    return design


def unregister(name: str) -> None:
    """Remove a design added by :func:`register` (a built-in one comes back on next use)."""
    _registered.pop(name, None)


def design_names() -> tuple[str, ...]:
    """Every design's name: the built-in ones in their order, then those registered."""
    return tuple(BUILTIN) + tuple(n for n in _registered if n not in BUILTIN)


def get_design(name: str) -> MarketDesign:
    """The design called ``name``.

    Raises
    ------
    InputError
        If no design has that name (the message lists those there are).
    """
    if name in _registered:
        return _registered[name]
    if name in BUILTIN:
        return register(importlib.import_module(BUILTIN[name]))  # type: ignore[arg-type]
    raise InputError(f"unknown market design {name!r}; choose one of {', '.join(design_names())}")


def all_designs() -> list[MarketDesign]:
    """Every design, in the order of :func:`design_names`."""
    return [get_design(name) for name in design_names()]


def is_local_market(design: MarketDesign) -> bool:
    """Whether the design has a local market (``False``: metered energy with the retailer)."""
    return bool(getattr(design, "local_market", True))


def parse_options(value: Any) -> BaseModel:
    """A ``market:`` section (mapping) as its design's options model (pydantic validator).

    Errors of the section keep their location (``market.intradya``), so the scenario loader
    names file and line. An unknown design is a ``ValueError`` naming the designs there are.
    """
    from pydantic import BaseModel, ConfigDict, create_model

    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"market must be a mapping, got {type(value).__name__}")
    name = value.get("design", "community")
    if not isinstance(name, str) or name not in design_names():
        # Validated as a choice, so that the error is at ``market.design`` (file and line).
        choice = create_model("MarketDesignChoice", __config__=ConfigDict(extra="ignore"),
                              design=(Literal[design_names()], ...))  # type: ignore[arg-type]
        choice.model_validate({"design": name})
    return get_design(name).Options.model_validate({**value, "design": name})


def design_options(scenario: Scenario, name: str, **overrides: Any) -> BaseModel:
    """The options of design ``name`` for a scenario (its ``fixed_options`` and ``overrides``
    applied; ``None``: not given); see :func:`options_from_scenario`."""
    design = get_design(name)
    return options_from_scenario(scenario, design.Options, **{
        **getattr(design, "fixed_options", {}), **overrides, "design": name})


def options_from_scenario(scenario: Scenario, model: type[_Options], **overrides: Any
                          ) -> _Options:
    """Options ``model`` for a scenario, with ``overrides`` (``None``: not overridden).

    The scenario's ``market`` section was validated against its own design's options when it was
    read. When another design runs (``simulate --design``, ``compare --designs``), the options
    written for the scenario's design that ``model`` also has (e.g. ``network``) carry over, the
    others are left out.

    Raises
    ------
    InputError
        If the options (with the overrides) are not valid for the model.
    """
    from pydantic import ValidationError

    market = scenario.market
    data = market.model_dump(exclude_unset=True)
    if not isinstance(market, model):
        data = {k: v for k, v in data.items() if k in model.model_fields and k != "design"}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"market.{'.'.join(map(str, e['loc']))}: {e['msg']}"
            + (f" (got {e['input']!r})" if not isinstance(e.get("input"), dict) else "")
            for e in exc.errors())
        raise InputError(f"scenario {scenario.name}: {problems}") from None


def _default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown_table() -> str:
    """The table of designs in ``docs/scenario.md`` (name, what it does, options with defaults),
    read from the registry; ``python -m lemgrid.designs`` prints it."""
    rows = ["| design | what it does | options (defaults) |", "|---|---|---|"]
    for design in all_designs():
        fixed = getattr(design, "fixed_options", {})
        options = ", ".join(f"`{k}` ({_default(f.default)})"
                            for k, f in design.Options.model_fields.items()
                            if k != "design" and k not in fixed)
        rows.append(f"| `{design.name}` | {design.summary} | {options or '—'} |")
    return "\n".join(rows)
