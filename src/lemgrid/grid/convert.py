"""Conversion of a pandapower net into lemgrid's :class:`~lemgrid.grid.network.Network`.

We let pandapower build its internal case (``net._ppc``) and take its admittance matrices, so the
physics (line charging, transformer model, taps, phase shifts, switches) is pandapower's, not a
re-implementation of it.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lemgrid.errors import InputError, NotBuiltError
from lemgrid.grid.network import ElementTable, Network


def unique_names(names: pd.Series, fallback: list[str]) -> np.ndarray:
    """Element names as unique strings: missing names take ``fallback``, duplicates get ' #idx'."""
    out = [
        fb if (n is None or (isinstance(n, float) and math.isnan(n)) or str(n) == "") else str(n)
        for n, fb in zip(names.tolist(), fallback, strict=True)
    ]
    seen: dict[str, int] = {}
    for name in out:
        seen[name] = seen.get(name, 0) + 1
    return np.array(
        [f"{n} #{idx}" if seen[n] > 1 else n for n, idx in zip(out, names.index, strict=True)],
        dtype=str,
    )


def _element_table(df: pd.DataFrame, bus_pos: pd.Series, kind_column: str, prefix: str) -> ElementTable:
    if df is None or len(df) == 0:
        return ElementTable.empty()
    df = df[df["in_service"].astype(bool)]
    scaling = df["scaling"].to_numpy(float) if "scaling" in df else np.ones(len(df))
    kind = df[kind_column] if kind_column in df else pd.Series([""] * len(df), index=df.index)
    e_kwh = df["max_e_mwh"].to_numpy(float) * 1e3 if "max_e_mwh" in df else np.full(len(df), np.nan)
    return ElementTable(
        names=unique_names(df["name"], [f"{prefix} {i}" for i in df.index]),
        bus=bus_pos.loc[df["bus"]].to_numpy(np.int64),
        p_kw=df["p_mw"].to_numpy(float) * scaling * 1e3,
        q_kvar=df["q_mvar"].to_numpy(float) * scaling * 1e3 if "q_mvar" in df else np.zeros(len(df)),
        kind=np.asarray(kind.fillna("").astype(str).to_numpy(), dtype=str),
        e_kwh=e_kwh,
    )


def element_index(df: pd.DataFrame) -> pd.Index:
    """The pandapower indices of the in-service elements, in the order of the ElementTable."""
    return df.index[df["in_service"].astype(bool)] if len(df) else df.index


def network_from_pandapower(net, name: str) -> Network:
    """Build a :class:`Network` from a pandapower net.

    Parameters
    ----------
    net : pandapowerNet
        The grid. It is not modified (pandapower runs on a copy with all injections at zero,
        which always converges and yields the same admittance matrices).
    name : str
        Identifier stored in the network (e.g. ``ieee33``).

    Raises
    ------
    InputError
        If the net has no external grid (slack) or no buses.
    NotBuiltError
        If the net holds voltage-controlled generators (PV buses), which the batched power flow
        does not handle.
    """
    import pandapower as pp

    if len(net.bus) == 0:
        raise InputError(f"grid {name}: the network has no buses")
    if len(net.ext_grid) == 0 or not net.ext_grid["in_service"].any():
        raise InputError(f"grid {name}: the network has no in-service external grid (slack bus)")
    if len(net.gen) and net.gen["in_service"].any():
        raise NotBuiltError(
            f"grid {name}: voltage-controlled generators ('gen', {int(net.gen.in_service.sum())} in "
            "service) are not supported by the batched power flow; LV and MV grids have none"
        )

    for table in ("ward", "xward", "motor", "asymmetric_load", "asymmetric_sgen", "dcline",
                  "impedance", "trafo3w", "svc", "tcsc", "ssc", "vsc"):
        if table in net and len(net[table]) and net[table]["in_service"].any():
            raise NotBuiltError(f"grid {name}: '{table}' elements are not supported yet")

    # Shunts stay (they are part of the admittance matrix); injections are zeroed.
    work = copy.deepcopy(net)
    for table in ("load", "sgen", "storage"):
        if len(work[table]):
            work[table]["scaling"] = 0.0
    pp.runpp(work, numba=False)

    ppc = work._ppc
    internal = ppc["internal"]
    if len(internal["pv"]):
        raise NotBuiltError(f"grid {name}: PV buses are not supported by the batched power flow")
    ybus = sp.csr_matrix(internal["Ybus"])
    n_node = ybus.shape[0]
    base_mva = float(ppc["baseMVA"])

    bus_lookup = work._pd2ppc_lookups["bus"]
    node = bus_lookup[work.bus.index.to_numpy()]
    bus_node = np.where(node < n_node, node, -1).astype(np.int64)
    bus_pos = pd.Series(np.arange(len(work.bus)), index=work.bus.index)
    bus_names = unique_names(work.bus["name"], [str(i) for i in work.bus.index])

    ref = np.asarray(internal["ref"], dtype=np.int64)
    vm = internal["bus"][ref, 7].real  # VM column
    va = np.deg2rad(internal["bus"][ref, 8].real)  # VA column
    v_slack = vm * np.exp(1j * va)
    ext = work.ext_grid[work.ext_grid["in_service"].astype(bool)]
    slack_bus = int(bus_pos.loc[ext["bus"].iloc[0]])

    # Branches: ppc rows [lines..., trafos...]; ppci keeps the in-service ones in the same order.
    branch_is = np.asarray(internal["branch_is"], dtype=bool)
    ppci_branch = internal["branch"]
    kinds, names, load_f, load_t, ka_f_all, ka_t_all = [], [], [], [], [], []
    lookups = work._pd2ppc_lookups["branch"]
    bus_kv = work.bus["vn_kv"]

    def add(kind: str, table: pd.DataFrame, ends: tuple[str, str], rating_f, rating_t,
            fallback: list[str]) -> None:
        """Append in-service branches; ``rating_*`` turns kA at an end into percent loading."""
        f0, f1 = lookups[kind]
        active = branch_is[f0:f1]
        # kA per p.u. of current at each end (base current of the end's bus).
        ka_f = base_mva / (math.sqrt(3) * bus_kv.loc[table[ends[0]]].to_numpy())
        ka_t = base_mva / (math.sqrt(3) * bus_kv.loc[table[ends[1]]].to_numpy())
        kinds.extend([kind] * int(active.sum()))
        names.extend(unique_names(table["name"], fallback)[active])
        load_f.append((ka_f * rating_f)[active])
        load_t.append((ka_t * rating_t)[active])
        ka_f_all.append(ka_f[active])
        ka_t_all.append(ka_t[active])

    if "line" in lookups:
        line = work.line
        per_ka = 100 / (line["max_i_ka"] * line["df"] * line["parallel"]).to_numpy(float)
        add("line", line, ("from_bus", "to_bus"), per_ka, per_ka,
            [f"line {bus_names[bus_pos[a]]}-{bus_names[bus_pos[b]]}"
             for a, b in zip(line["from_bus"], line["to_bus"], strict=True)])
    if "trafo" in lookups:
        trafo = work.trafo
        rating = (trafo["sn_mva"] * trafo["parallel"] * trafo["df"]).to_numpy(float)
        add("trafo", trafo, ("hv_bus", "lv_bus"),
            trafo["vn_hv_kv"].to_numpy(float) * math.sqrt(3) / rating * 100,
            trafo["vn_lv_kv"].to_numpy(float) * math.sqrt(3) / rating * 100,
            [f"trafo {i}" for i in trafo.index])
    unsupported = set(lookups) - {"line", "trafo"}
    if unsupported:
        raise NotBuiltError(f"grid {name}: branch elements {sorted(unsupported)} are not supported")

    n_branch = len(kinds)
    if internal["Yf"].shape[0] != n_branch:
        raise RuntimeError(f"grid {name}: branch bookkeeping mismatch with pandapower's case")

    return Network(
        name=name,
        bus_names=bus_names,
        bus_vn_kv=work.bus["vn_kv"].to_numpy(float),
        bus_node=bus_node,
        base_mva=base_mva,
        ybus=ybus,
        slack_nodes=ref,
        v_slack_pu=v_slack,
        slack_bus=slack_bus,
        branch_names=np.array(names, dtype=str),
        branch_kind=np.array(kinds, dtype=str),
        yf=sp.csr_matrix(internal["Yf"]),
        yt=sp.csr_matrix(internal["Yt"]),
        branch_from_node=ppci_branch[:, 0].real.astype(np.int64),
        branch_to_node=ppci_branch[:, 1].real.astype(np.int64),
        branch_r_pu=ppci_branch[:, 2].real.astype(float),
        branch_x_pu=ppci_branch[:, 3].real.astype(float),
        branch_loading_from=np.concatenate(load_f) if load_f else np.array([]),
        branch_loading_to=np.concatenate(load_t) if load_t else np.array([]),
        branch_ka_from=np.concatenate(ka_f_all) if ka_f_all else np.array([]),
        branch_ka_to=np.concatenate(ka_t_all) if ka_t_all else np.array([]),
        loads=_element_table(net.load, bus_pos, "profile", "load"),
        sgens=_element_table(net.sgen, bus_pos, "profile", "sgen"),
        storages=_element_table(net.storage, bus_pos, "profile", "storage"),
    )
