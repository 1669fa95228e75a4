"""From a validated :class:`ScenarioConfig` to a :class:`Scenario` of arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lemgrid.assets.kinds import asset_kinds, kind_for_type
from lemgrid.assets.participants import Participants
from lemgrid.errors import InputError
from lemgrid.grid.kpis import GridLimits
from lemgrid.grid.network import Network
from lemgrid.grid.profiles import (
    GridProfiles,
    HorizonError,
    parse_resolution,
    resample_power,
    simbench_time_index,
    window_bounds,
)
from lemgrid.grid.sources import Grid, load_grid
from lemgrid.scenario.config import (
    AssetConfig,
    BatteryConfig,
    MarketConfig,
    PVConfig,
    ScenarioConfig,
    TariffConfig,
)


class FieldError(InputError):
    """An input error located at a field of the scenario (``loc`` like pydantic's)."""

    def __init__(self, loc: tuple, message: str) -> None:
        self.loc = loc
        self.detail = message
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True, eq=False)
class Scenario:
    """A scenario ready to run: network, horizon, participants and the rest of the grid.

    Attributes
    ----------
    config : ScenarioConfig
    name : str
    network : Network
    time_index : pandas.DatetimeIndex, shape (T,)
    participants : Participants
    background_p_kw, background_q_kvar : ndarray, shape (T, n_bus)
        Injection of grid elements that no participant owns [kW], [kvar] (generation positive).
    limits : GridLimits
    """

    config: ScenarioConfig
    name: str
    network: Network
    time_index: pd.DatetimeIndex
    participants: Participants
    background_p_kw: np.ndarray
    background_q_kvar: np.ndarray
    limits: GridLimits

    @property
    def dt_h(self) -> float:
        """Interval length [h]."""
        return parse_resolution(self.config.resolution) / pd.Timedelta(hours=1)

    @property
    def tariffs(self) -> TariffConfig:
        return self.config.tariffs

    @property
    def market(self) -> MarketConfig:
        return self.config.market

    def bus_injections(self, p_kw: np.ndarray, q_kvar: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Bus injections for the power flow from participants' net injections.

        Parameters
        ----------
        p_kw : ndarray, shape (T, N)
            Net active injection of each participant [kW] (export positive).
        q_kvar : ndarray, shape (T, N), optional
            Net reactive injection [kvar]; default: minus the participants' load reactive power.

        Returns
        -------
        p_inj_kw, q_inj_kvar : ndarray, shape (T, n_bus)
            Including the background elements.
        """
        if q_kvar is None:
            q_kvar = -self.participants.load_q_kvar
        return (self.participants_to_buses(p_kw) + self.background_p_kw,
                self.participants_to_buses(q_kvar) + self.background_q_kvar)

    def participants_to_buses(self, values: np.ndarray) -> np.ndarray:
        """Sum per-participant columns (T, N) onto their buses (T, n_bus)."""
        parts = self.participants
        n = len(parts)
        to_bus = sp.csr_matrix((np.ones(n), (parts.bus, np.arange(n))),
                               shape=(self.network.n_bus, n))
        return np.asarray((to_bus @ np.asarray(values).T).T)


# --- building -------------------------------------------------------------------------------------

class _Horizon:
    """The scenario's time window and how to bring 15-minute SimBench-year series onto it."""

    def __init__(self, config: ScenarioConfig, profiles: GridProfiles) -> None:
        self.resolution = parse_resolution(config.resolution)
        try:
            self.i0, self.i1 = window_bounds(profiles.time_index, profiles.resolution,
                                             config.start, config.days)
            n_t = len(resample_power(np.empty(self.i1 - self.i0), profiles.resolution,
                                     self.resolution))
        except HorizonError as exc:
            raise FieldError((exc.field,), str(exc)) from None
        except InputError as exc:
            raise FieldError(("resolution",), str(exc)) from None
        self.source_resolution = profiles.resolution
        # Interval starts in the grid's local time (timezone-aware for SimBench's profiles).
        self.time_index = pd.date_range(profiles.time_index[self.i0], periods=n_t,
                                        freq=self.resolution)
        self.dt_h = self.resolution / pd.Timedelta(hours=1)

    def take(self, values: np.ndarray) -> np.ndarray:
        """Window and resample an array of source intervals (axis 0)."""
        return resample_power(values[self.i0:self.i1], self.source_resolution, self.resolution)

    def standard(self, name: str, loc: tuple, reactive: bool = False) -> np.ndarray:
        """A SimBench standard profile on the horizon (relative values)."""
        from lemgrid.assets.profile_library import standard_profile

        try:
            year = standard_profile(name, reactive)
        except InputError as exc:
            raise FieldError(loc, str(exc)) from None
        return self.take(year)


def _standard_grid_profiles(config: ScenarioConfig, network: Network) -> GridProfiles:
    """Profiles for a grid without time series: nominal power x SimBench standard profiles."""
    from lemgrid.assets.profile_library import standard_profile

    def std(name: str, field: str, reactive: bool = False) -> np.ndarray:
        try:
            return standard_profile(name, reactive)
        except InputError as exc:
            raise FieldError(("default_profiles", field), str(exc)) from None

    load, pv = config.default_profiles.load, config.default_profiles.pv
    p_rel, q_rel, pv_rel = std(load, "load"), std(load, "load", True), std(pv, "pv")
    n_t = len(p_rel)
    return GridProfiles(
        time_index=simbench_time_index(n_t),
        load_p_kw=p_rel[:, None] * network.loads.p_kw[None, :],
        load_q_kvar=q_rel[:, None] * network.loads.q_kvar[None, :],
        sgen_p_kw=pv_rel[:, None] * network.sgens.p_kw[None, :],
        storage_p_kw=np.zeros((n_t, len(network.storages))),
    )


class _ParticipantBuilder:
    """Accumulates participants column by column."""

    def __init__(self, horizon: _Horizon, network: Network) -> None:
        self.h = horizon
        self.network = network
        self.ids: list[str] = []
        self.bus: list[int] = []
        self.load_p: list[np.ndarray] = []
        self.load_q: list[np.ndarray] = []
        self.pv: list[np.ndarray] = []
        self.kind_rows: dict[str, list[dict]] = {}

    def add(self, pid: str, bus: int, loc: tuple) -> int:
        if pid in self.ids:
            raise FieldError(loc, f"participant id {pid!r} is not unique")
        n_t = len(self.h.time_index)
        self.ids.append(pid)
        self.bus.append(bus)
        self.load_p.append(np.zeros(n_t))
        self.load_q.append(np.zeros(n_t))
        self.pv.append(np.zeros(n_t))
        return len(self.ids) - 1

    def add_asset(self, config: AssetConfig, owner: int, name: str, loc: tuple) -> None:
        """The row(s) of an asset of a registered kind, built by its kind."""
        kind = kind_for_type(config.type)
        rows = kind.build(config, owner, name, self.h, loc)
        self.kind_rows.setdefault(kind.name, []).extend(rows if isinstance(rows, list)
                                                        else [rows])

    def first_at_bus(self, bus: int) -> int | None:
        return next((i for i, b in enumerate(self.bus) if b == bus), None)

    def build(self) -> Participants:
        def stack(columns: list[np.ndarray]) -> np.ndarray:
            return np.stack(columns, axis=1) if columns else np.zeros((len(self.h.time_index), 0))

        return Participants(
            ids=np.array(self.ids, dtype=str),
            bus=np.array(self.bus, dtype=np.int64),
            load_p_kw=stack(self.load_p),
            load_q_kvar=stack(self.load_q),
            pv_p_kw=stack(self.pv),
            kinds={name: kind.table(self.kind_rows[name])
                   for name, kind in asset_kinds().items() if name in self.kind_rows},
        )


def _bus(network: Network, name: str, loc: tuple) -> int:
    try:
        return network.bus_position(name)
    except InputError as exc:
        raise FieldError(loc, str(exc)) from None


def _owners(builder: _ParticipantBuilder, asset: AssetConfig, loc: tuple) -> list[int]:
    """Participants that receive an asset (creates one for a bus without participants)."""
    if asset.owner is not None:
        if asset.owner not in builder.ids:
            raise FieldError(loc + ("owner",), f"unknown participant {asset.owner!r}")
        return [builder.ids.index(asset.owner)]
    if asset.bus is not None:
        bus = _bus(builder.network, asset.bus, loc + ("bus",))
        owner = builder.first_at_bus(bus)
        if owner is None:
            owner = builder.add(asset.id or f"{asset.type}@{asset.bus}", bus, loc)
        return [owner]
    if asset.every is None:
        raise FieldError(loc, "give one of owner (participant id), bus (bus name) "
                              "or every (n: every n-th participant)")
    return list(range(0, len(builder.ids), asset.every))


def _add_asset(builder: _ParticipantBuilder, asset: AssetConfig, loc: tuple, scale_pv: float) -> None:
    h = builder.h
    for owner in _owners(builder, asset, loc):
        name = asset.id if (asset.id and asset.every is None) else f"{builder.ids[owner]}/{asset.type}"
        if isinstance(asset, PVConfig):  # PV is the participant's generation profile
            builder.pv[owner] = builder.pv[owner] + asset.kwp * scale_pv * h.standard(
                asset.profile, loc + ("profile",))
        else:  # an asset kind (battery, EV, shiftable load, heat pump, ...)
            builder.add_asset(asset, owner, name, loc)


def _check_references(config: ScenarioConfig, network: Network, ids: list[str]) -> None:
    """Participants and buses named outside the participant list must exist."""
    for pid in config.agents.by_participant:
        if pid not in ids:
            raise FieldError(("agents", "by_participant", pid), f"unknown participant {pid!r}")
    represented: dict[str, str] = {}
    for k, agg in enumerate(config.aggregators):
        loc = ("aggregators", k)
        if agg.id in ids:
            raise FieldError(loc + ("id",), f"aggregator id {agg.id!r} is a participant's id")
        for m, pid in enumerate(agg.participants):
            if pid not in ids:
                raise FieldError(loc + ("participants", m), f"unknown participant {pid!r}")
        members = list(agg.participants)
        if agg.every is not None:
            if agg.offset >= len(ids):
                raise FieldError(loc + ("offset",), f"offset {agg.offset} is beyond the last "
                                                    f"participant (there are {len(ids)})")
            members += ids[agg.offset::agg.every]
        for pid in members:
            if represented.setdefault(pid, agg.id) != agg.id:
                raise FieldError(loc, f"participant {pid!r} is already represented by "
                                      f"{represented[pid]!r}")
    if config.dso is not None:
        for where, requests in ((("dso", "flexibility", "requests"), config.dso.flexibility.requests),
                                (("dso", "coordination", "tso_requests"),
                                 config.dso.coordination.tso_requests)):
            for k, request in enumerate(requests):
                for m, bus in enumerate(request.buses or ()):
                    _bus(network, bus, where + (k, "buses", m))


def build_scenario(config: ScenarioConfig, grid: Grid | None = None) -> Scenario:
    """Turn a validated config into arrays: load the grid, cut the horizon, place participants.

    Parameters
    ----------
    config : ScenarioConfig
    grid : Grid, optional
        An already loaded grid (default: load ``config.grid``).

    Raises
    ------
    FieldError
        (an :class:`~lemgrid.errors.InputError`) naming the field: unknown bus, load or participant
        (also in ``agents``, ``aggregators`` and the DSO's requests), a participant in two
        aggregators, a horizon outside the profiles, an EV whose energy cannot be charged in its
        window.
    """
    if grid is None:
        try:
            grid = load_grid(config.grid)
        except InputError as exc:
            raise FieldError(("grid",), str(exc)) from None
        except FileNotFoundError as exc:
            raise FieldError(("grid",), f"no such grid file: {exc.filename}") from None
    network = grid.network
    profiles = grid.profiles if grid.profiles is not None else _standard_grid_profiles(config, network)
    h = _Horizon(config, profiles)
    scale = config.scale
    load_p = h.take(profiles.load_p_kw) * scale.load
    load_q = h.take(profiles.load_q_kvar) * scale.load
    sgen_p = h.take(profiles.sgen_p_kw) * scale.pv
    storage_p = h.take(profiles.storage_p_kw)

    builder = _ParticipantBuilder(h, network)
    loads, sgens = network.loads, network.sgens
    load_owner = np.full(len(loads), -1)
    sgen_owners: list[list[int]] = [[] for _ in range(len(sgens))]
    storage_owner = np.full(len(network.storages), -1)

    if config.participants == "from-grid":
        for j in range(len(loads)):
            load_owner[j] = builder.add(str(loads.names[j]), int(loads.bus[j]), ("participants",))
        for j in range(len(sgens)):
            at_bus = list(np.flatnonzero(loads.bus == sgens.bus[j]))
            sgen_owners[j] = [int(load_owner[i]) for i in at_bus] or [
                builder.add(str(sgens.names[j]), int(sgens.bus[j]), ("participants",))]
        storages = network.storages
        for j in range(len(storages)):
            if not (np.isfinite(storages.e_kwh[j]) and storages.e_kwh[j] > 0 and storages.p_kw[j]):
                continue  # no energy rating: keep its SimBench schedule as background
            owner = builder.first_at_bus(int(storages.bus[j]))
            if owner is None:
                owner = builder.add(str(storages.names[j]), int(storages.bus[j]), ("participants",))
            storage_owner[j] = owner
            builder.add_asset(BatteryConfig(
                type="battery", capacity_kwh=float(storages.e_kwh[j]),
                power_kw=float(abs(storages.p_kw[j])), efficiency=0.9, soc_min=0.0, soc_max=1.0,
                soc_initial=0.5, soc_final=0.5), owner, str(storages.names[j]), ("grid",))
    else:
        load_names = {str(n): i for i, n in enumerate(loads.names)}
        sgen_names = {str(n): i for i, n in enumerate(sgens.names)}
        for k, part in enumerate(config.participants):
            loc = ("participants", k)
            owner = builder.add(part.id, _bus(network, part.bus, loc + ("bus",)), loc + ("id",))
            for m, name in enumerate(part.loads):
                load_j = load_names.get(name)
                if load_j is None:
                    raise FieldError(loc + ("loads", m), f"unknown load {name!r} in grid {network.name}")
                if load_owner[load_j] >= 0:
                    raise FieldError(loc + ("loads", m),
                                     f"load {name!r} already belongs to {builder.ids[load_owner[load_j]]!r}")
                load_owner[load_j] = owner
            for m, name in enumerate(part.sgens):
                sgen_j = sgen_names.get(name)
                if sgen_j is None:
                    raise FieldError(loc + ("sgens", m), f"unknown sgen {name!r} in grid {network.name}")
                if sgen_owners[sgen_j]:
                    raise FieldError(loc + ("sgens", m),
                                     f"sgen {name!r} already belongs to {builder.ids[sgen_owners[sgen_j][0]]!r}")
                sgen_owners[sgen_j] = [owner]
            if part.load is not None:
                rel = h.standard(part.load.profile, loc + ("load", "profile"))
                rel_q = h.standard(part.load.profile, loc + ("load", "profile"), reactive=True)
                from lemgrid.assets.profile_library import standard_profile

                per_kwh = part.load.annual_kwh / (standard_profile(part.load.profile).sum() * 0.25)
                builder.load_p[owner] += rel * per_kwh * scale.load
                builder.load_q[owner] += rel_q * per_kwh * scale.load
            if part.pv_kwp:
                builder.pv[owner] += part.pv_kwp * scale.pv * h.standard(
                    part.pv_profile, loc + ("pv_profile",))
            for m, asset in enumerate(part.assets):
                if asset.placed:
                    raise FieldError(loc + ("assets", m),
                                     "assets listed under a participant take no owner/bus/every")

    # Owned grid elements go to their participants, the rest stays in the background.
    for owned in np.flatnonzero(load_owner >= 0):
        builder.load_p[load_owner[owned]] = builder.load_p[load_owner[owned]] + load_p[:, owned]
        builder.load_q[load_owner[owned]] = builder.load_q[load_owner[owned]] + load_q[:, owned]
    for j, owners in enumerate(sgen_owners):
        for owner in owners:
            builder.pv[owner] = builder.pv[owner] + sgen_p[:, j] / len(owners)
    n_t, n_bus = len(h.time_index), network.n_bus
    bg_load = load_owner < 0
    bg_sgen = np.array([not owners for owners in sgen_owners], dtype=bool)
    bg_storage = storage_owner < 0
    background_p = (
        sgens.to_buses(np.where(bg_sgen, sgen_p, 0.0), n_bus)
        - loads.to_buses(np.where(bg_load, load_p, 0.0), n_bus)
        - network.storages.to_buses(np.where(bg_storage, storage_p, 0.0), n_bus)
    ) if n_t else np.zeros((0, n_bus))
    background_q = -loads.to_buses(np.where(bg_load, load_q, 0.0), n_bus)

    # Assets: under explicit participants first, then the scenario-wide list.
    if config.participants != "from-grid":
        for k, part in enumerate(config.participants):
            for m, asset in enumerate(part.assets):
                placed = asset.model_copy(update={"owner": part.id, "bus": None, "every": None})
                _add_asset(builder, placed, ("participants", k, "assets", m), scale.pv)
    for m, asset in enumerate(config.assets):
        if not asset.placed:
            raise FieldError(("assets", m), "give one of owner (participant id), bus (bus name) "
                                            "or every (n: every n-th participant)")
        _add_asset(builder, asset, ("assets", m), scale.pv)

    participants = builder.build()
    if not len(participants):
        raise FieldError(("participants",), f"grid {network.name} has no loads: no participants")
    _check_references(config, network, list(builder.ids))
    limits = GridLimits(**config.grid_limits.model_dump())
    return Scenario(
        config=config, name=config.name or Path(str(config.grid)).name, network=network,
        time_index=h.time_index, participants=participants,
        background_p_kw=np.broadcast_to(background_p, (n_t, n_bus)).copy(),
        background_q_kvar=np.broadcast_to(background_q, (n_t, n_bus)).copy(), limits=limits,
    )
