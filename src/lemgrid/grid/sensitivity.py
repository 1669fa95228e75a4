"""Linear grid sensitivities around AC operating points (one per interval, batched).

At each interval's AC solution the power-flow Jacobian J = d[P; Q]/d[theta; |V|] of the PQ nodes is
inverted; its blocks give how bus voltage magnitudes, the slack's active power (hence losses) and
branch current magnitudes move per kW injected at each bus. The derivatives are the complex-matrix
forms of MATPOWER's ``dSbus_dV`` (Zimmerman, "AC power flows, generalized OPF costs and their
derivatives", MATPOWER Technical Note 2, 2010). Linearising around the AC point instead of a flat
start keeps the error small where clearing needs it; network-constrained clearing re-linearises at
each new schedule until the linearisation is that of its own solution
(``lemgrid.market.community_constrained``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lemgrid.grid.network import Network
from lemgrid.grid.powerflow import PowerFlowResult, run_powerflow


@dataclass(frozen=True, eq=False)
class Linearization:
    """First-order model of the grid around T operating points.

    Attributes
    ----------
    p_inj_kw, q_inj_kvar : ndarray, shape (T, n_bus)
        Bus injections of the operating points [kW], [kvar].
    vm_pu : ndarray, shape (T, n_bus)
        Voltage magnitudes at the operating points [p.u.] (NaN for unenergised buses).
    dvm_dp : ndarray, shape (T, n_bus, n_bus)
        ``dvm_dp[t, i, j]`` = d|V_i| / dP_j [p.u./kW] (injection at bus j, reactive power fixed).
    p_slack_kw : ndarray, shape (T,)
        Import at the slack at the operating points [kW].
    dpslack_dp : ndarray, shape (T, n_bus)
        d(import) / dP_j [kW/kW]; -1 plus the marginal loss factor of bus j.
    loading_percent : ndarray, shape (T, n_branch)
        Loading at the operating points (the more loaded end) [%].
    dloading_dp : ndarray, shape (T, n_branch, n_bus)
        d(loading of that end) / dP_j [%/kW].
    result : PowerFlowResult
        The AC power flow of the operating points.
    """

    p_inj_kw: np.ndarray
    q_inj_kvar: np.ndarray
    vm_pu: np.ndarray
    dvm_dp: np.ndarray
    p_slack_kw: np.ndarray
    dpslack_dp: np.ndarray
    loading_percent: np.ndarray
    dloading_dp: np.ndarray
    result: PowerFlowResult


def linearize(network: Network, p_inj_kw: np.ndarray, q_inj_kvar: np.ndarray) -> Linearization:
    """AC power flow of T operating points and the grid's sensitivities at each of them.

    Parameters
    ----------
    network : Network
    p_inj_kw, q_inj_kvar : ndarray, shape (T, n_bus)
        Net injections at the buses (generation positive) [kW], [kvar].

    Returns
    -------
    Linearization
    """
    p = np.atleast_2d(p_inj_kw)
    q = np.atleast_2d(q_inj_kvar)
    result = run_powerflow(network, p, q, keep_node_voltages=True)
    v = result.v_node  # (T, n)
    if v is None:
        raise RuntimeError("run_powerflow(keep_node_voltages=True) returned no node voltages")
    n = network.n_node
    y = network.ybus.toarray()
    slack = network.slack_nodes
    pq = np.setdiff1d(np.arange(n), slack)
    m = len(pq)

    i_node = v @ y.T
    v_norm = v / np.abs(v)
    conj_y = np.conj(y)[None, :, :]
    diag = np.arange(n)
    ds_dvm = v[:, :, None] * conj_y * np.conj(v_norm)[:, None, :]
    ds_dvm[:, diag, diag] += v_norm * np.conj(i_node)
    ds_dva = -1j * v[:, :, None] * conj_y * np.conj(v)[:, None, :]
    ds_dva[:, diag, diag] += 1j * v * np.conj(i_node)

    def block(a: np.ndarray) -> np.ndarray:
        return a[:, pq][:, :, pq]

    jac = np.block([[block(ds_dva).real, block(ds_dvm).real],
                    [block(ds_dva).imag, block(ds_dvm).imag]])
    jac_inv = np.linalg.inv(jac)
    # State response to active injection at PQ nodes (reactive injections held fixed). Contiguous
    # copies: numpy's stacked matmul falls back from BLAS to a slow loop on strided operands.
    dth_dp = np.ascontiguousarray(jac_inv[:, :m, :m])
    dvm_dp_node = np.ascontiguousarray(jac_inv[:, m:, :m])

    scale = 1.0 / (network.base_mva * 1e3)  # p.u. per kW
    ds_slack = (ds_dva[:, slack][:, :, pq] @ dth_dp + ds_dvm[:, slack][:, :, pq] @ dvm_dp_node)
    dpslack_node = ds_slack.real.sum(axis=1)  # kW per kW: (T, m)

    # Branch current magnitudes at both ends.
    yf, yt = network.yf.toarray(), network.yt.toarray()
    ends = []
    for ybr, k_load in ((yf, network.branch_loading_from), (yt, network.branch_loading_to)):
        i_br = v @ ybr.T  # (T, nbr)
        unit = np.conj(i_br) / np.maximum(np.abs(i_br), 1e-12)
        di_dvm = np.ascontiguousarray(ybr[None, :, pq] * v_norm[:, None, pq])
        di_dth = np.ascontiguousarray(1j * ybr[None, :, pq] * v[:, None, pq])
        dmag = (unit[:, :, None] * (di_dth @ dth_dp + di_dvm @ dvm_dp_node)).real
        ends.append((np.abs(i_br) * k_load, dmag * k_load[None, :, None] * scale))
    (load_f, dload_f), (load_t, dload_t) = ends
    use_to = load_t > load_f
    loading = np.where(use_to, load_t, load_f)
    dloading_node = np.where(use_to[:, :, None], dload_t, dload_f)

    # From PQ nodes to buses (buses on a slack node or unenergised have zero sensitivity).
    node_col = np.full(n, -1)
    node_col[pq] = np.arange(m)
    col = np.where(network.bus_node >= 0, node_col[np.maximum(network.bus_node, 0)], -1)
    has = col >= 0
    n_bus, n_t = network.n_bus, len(p)

    def to_bus_columns(a: np.ndarray) -> np.ndarray:
        out = np.zeros(a.shape[:-1] + (n_bus,))
        out[..., has] = a[..., col[has]]
        return out

    dpslack_dp = to_bus_columns(dpslack_node)
    # A kW injected at the slack bus itself displaces a kW of import, without losses.
    dpslack_dp[:, np.isin(network.bus_node, slack)] = -1.0

    dvm_dp = np.zeros((n_t, n_bus, n_bus))
    rows = np.flatnonzero(has)
    dvm_dp[:, rows[:, None], rows[None, :]] = dvm_dp_node[:, col[rows]][:, :, col[rows]] * scale
    return Linearization(
        p_inj_kw=p, q_inj_kvar=q, vm_pu=result.vm_pu, dvm_dp=dvm_dp,
        p_slack_kw=result.p_slack_kw, dpslack_dp=dpslack_dp,
        loading_percent=loading, dloading_dp=to_bus_columns(dloading_node), result=result,
    )
