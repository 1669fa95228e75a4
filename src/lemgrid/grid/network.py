"""The internal network model: compact bus/branch arrays that later layers use.

A :class:`Network` is built once from a pandapower net (at the edge) and then used without
pandapower: the admittance matrices come from pandapower's own conversion (``net._ppc``), so that
our batched power flow solves exactly the model pandapower solves (line charging, transformer taps,
phase shifts and magnetising branches, bus-bus switches fused, open line switches).

Nodes are the electrical nodes of pandapower's internal case (buses fused by closed bus-bus
switches share a node); buses are the pandapower buses, in the order of ``net.bus``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import numpy as np
import scipy.sparse as sp

#: Bumped whenever the on-disk layout of :meth:`Network.save` changes.
FORMAT_VERSION = 2


def _plain(value) -> np.ndarray:
    """An array numpy can store without pickle (object arrays of text become unicode)."""
    array = np.asarray(value)
    return array.astype(str) if array.dtype == object else array


@dataclass(frozen=True, eq=False)
class ElementTable:
    """Loads, static generators (PV) or storage units attached to buses.

    Attributes
    ----------
    names : ndarray of str, shape (n,)
    bus : ndarray of int, shape (n,)
        Position of the element's bus in :attr:`Network.bus_names`.
    p_kw, q_kvar : ndarray of float, shape (n,)
        Nominal active / reactive power of the element [kW], [kvar] (pandapower's ``p_mw`` x 1000;
        for loads positive = consumption, for sgens positive = generation).
    kind : ndarray of str, shape (n,)
        Element sub-type (pandapower ``type`` / SimBench ``profile`` column), '' when unknown.
    e_kwh : ndarray of float, shape (n,)
        Energy capacity [kWh] (storage only; NaN otherwise).
    """

    names: np.ndarray
    bus: np.ndarray
    p_kw: np.ndarray
    q_kvar: np.ndarray
    kind: np.ndarray
    e_kwh: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def to_buses(self, values: np.ndarray, n_bus: int) -> np.ndarray:
        """Sum per-element values (shape (T, n)) onto buses: an array of shape (T, n_bus)."""
        values = np.atleast_2d(values)
        incidence = sp.csr_matrix(
            (np.ones(len(self.bus)), (np.arange(len(self.bus)), self.bus)), shape=(len(self.bus), n_bus)
        )
        return np.asarray((incidence.T @ values.T).T)

    @classmethod
    def empty(cls) -> ElementTable:
        return cls(*(np.array([], dtype=d) for d in (str, np.int64, float, float, str, float)))


@dataclass(frozen=True, eq=False)
class Network:
    """A distribution grid as arrays, ready for batched AC power flow.

    Attributes
    ----------
    name : str
        Grid identifier (e.g. ``simbench:1-LV-rural1--0-sw``).
    bus_names : ndarray of str, shape (n_bus,)
        Names of the pandapower buses (unique).
    bus_vn_kv : ndarray, shape (n_bus,)
        Nominal voltage of each bus [kV].
    bus_node : ndarray of int, shape (n_bus,)
        Electrical node of each bus; -1 for buses not connected to any slack (no voltage).
    base_mva : float
        System base power [MVA] of the per-unit quantities below.
    ybus : scipy.sparse.csr_matrix, complex, shape (n_node, n_node)
        Bus admittance matrix [p.u.].
    slack_nodes : ndarray of int
        Nodes with fixed voltage (pandapower ext_grids).
    v_slack_pu : ndarray of complex
        Complex voltage set-point of each slack node [p.u.].
    slack_bus : int
        Position of the (first) slack bus: where import/export is measured.
    branch_names, branch_kind : ndarray of str, shape (n_branch,)
        In-service lines and transformers; ``branch_kind`` is 'line' or 'trafo'.
    yf, yt : scipy.sparse.csr_matrix, complex, shape (n_branch, n_node)
        Branch current at the from / to end as a function of node voltages [p.u.].
    branch_from_node, branch_to_node : ndarray of int, shape (n_branch,)
    branch_r_pu, branch_x_pu : ndarray, shape (n_branch,)
        Series resistance / reactance of each branch [p.u. on ``base_mva``].
    branch_loading_from, branch_loading_to : ndarray, shape (n_branch,)
        Loading in percent per p.u. current magnitude at each end, following pandapower's
        definitions (lines: of ``max_i_ka * df * parallel``; transformers: of rated current, from
        ``sn_mva``, ``vn_hv_kv``/``vn_lv_kv``, ``parallel`` and ``df``).
    branch_ka_from, branch_ka_to : ndarray, shape (n_branch,)
        kA per p.u. current at each end.
    loads, sgens, storages : ElementTable
    """

    name: str
    bus_names: np.ndarray
    bus_vn_kv: np.ndarray
    bus_node: np.ndarray
    base_mva: float
    ybus: sp.csr_matrix
    slack_nodes: np.ndarray
    v_slack_pu: np.ndarray
    slack_bus: int
    branch_names: np.ndarray
    branch_kind: np.ndarray
    yf: sp.csr_matrix
    yt: sp.csr_matrix
    branch_from_node: np.ndarray
    branch_to_node: np.ndarray
    branch_r_pu: np.ndarray
    branch_x_pu: np.ndarray
    branch_loading_from: np.ndarray
    branch_loading_to: np.ndarray
    branch_ka_from: np.ndarray
    branch_ka_to: np.ndarray
    loads: ElementTable
    sgens: ElementTable
    storages: ElementTable

    @property
    def n_bus(self) -> int:
        return len(self.bus_names)

    @property
    def n_node(self) -> int:
        return self.ybus.shape[0]

    @property
    def n_branch(self) -> int:
        return len(self.branch_names)

    def bus_position(self, name: str | int) -> int:
        """Position of a bus given its name; raises :class:`~lemgrid.errors.InputError` if unknown."""
        from lemgrid.errors import InputError

        positions = self._bus_lookup()
        key = str(name)
        if key not in positions:
            sample = ", ".join(self.bus_names[:5])
            raise InputError(
                f"unknown bus {key!r} in grid {self.name} ({self.n_bus} buses, e.g. {sample})"
            )
        return positions[key]

    def _bus_lookup(self) -> dict[str, int]:
        lookup = self.__dict__.get("_lookup")
        if lookup is None:
            lookup = {str(b): i for i, b in enumerate(self.bus_names)}
            object.__setattr__(self, "_lookup", lookup)
        return lookup

    @property
    def n_meshes(self) -> int:
        """Number of independent loops of the energised network (0 for a radial feeder; parallel
        transformers count as a loop)."""
        from scipy.sparse.csgraph import connected_components

        adjacency = sp.coo_matrix(
            (np.ones(self.n_branch), (self.branch_from_node, self.branch_to_node)),
            shape=(self.n_node, self.n_node),
        )
        n_components, _ = connected_components(adjacency, directed=False)
        return self.n_branch - self.n_node + n_components

    # --- persistence ---------------------------------------------------------------------------
    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The network as a flat dict of plain arrays (for ``np.savez``; no pickle)."""
        arrays: dict[str, np.ndarray] = {f"{prefix}format_version": np.array(FORMAT_VERSION)}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            key = prefix + field.name
            if isinstance(value, sp.spmatrix | sp.sparray):
                value = sp.csr_matrix(value)
                arrays[f"{key}.data"] = value.data
                arrays[f"{key}.indices"] = value.indices
                arrays[f"{key}.indptr"] = value.indptr
                arrays[f"{key}.shape"] = np.array(value.shape)
            elif isinstance(value, ElementTable):
                for sub in dataclasses.fields(value):
                    arrays[f"{key}.{sub.name}"] = _plain(getattr(value, sub.name))
            else:
                arrays[key] = _plain(value)
        return arrays

    @classmethod
    def from_arrays(cls, data, prefix: str = "") -> Network:
        """Inverse of :meth:`to_arrays`; ``data`` is a mapping such as an opened ``.npz``."""
        if int(data[f"{prefix}format_version"]) != FORMAT_VERSION:
            raise ValueError(f"network format {int(data[prefix + 'format_version'])} is stale")
        kwargs = {}
        for field in dataclasses.fields(cls):
            key = prefix + field.name
            if f"{key}.indptr" in data:
                kwargs[field.name] = sp.csr_matrix(
                    (data[f"{key}.data"], data[f"{key}.indices"], data[f"{key}.indptr"]),
                    shape=tuple(data[f"{key}.shape"]),
                )
            elif f"{key}.names" in data:
                kwargs[field.name] = ElementTable(
                    **{f.name: data[f"{key}.{f.name}"] for f in dataclasses.fields(ElementTable)}
                )
            else:
                value = data[key]
                kwargs[field.name] = value.item() if value.ndim == 0 else value
        kwargs["base_mva"] = float(kwargs["base_mva"])
        kwargs["slack_bus"] = int(kwargs["slack_bus"])
        kwargs["name"] = str(kwargs["name"])
        return cls(**kwargs)
