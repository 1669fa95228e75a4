"""Network-constrained community clearing against pandapower's AC optimal power flow (``runopp``).

The reference is built in pandapower alone, from the grid's own tables: PV as controllable sgens
(``max_p_mw`` = available PV, reactive power fixed at 0) with the curtailment value as a linear
cost (``create_poly_cost``: curtailing c kW costs c x value, i.e. -value per MW produced), the
retailer as the external grid with a two-segment cost (``create_pwl_cost``: feed-in tariff for
export, retail price for import), fixed loads, the voltage band as ``min_vm_pu``/``max_vm_pu`` and
branch limits as ``max_loading_percent`` (pandapower's OPF limits branch current, as lemgrid does).
lemgrid sees the same grid through its own conversion and the same members as a
:class:`CommunityProblem`.

Conventions: ``res_bus.lam_p`` is the marginal cost of one more MW consumed at the bus for an hour
[EUR/MWh]; divided by 1000 it is lemgrid's DLMP [EUR/kWh] (also the price of consuming). Both
contain losses: the OPF is exact AC, lemgrid prices them through the slack's sensitivity (the
DLMP's loss component). The OPF is a single snapshot, so every interval gets its own ``runopp``;
lemgrid clears all intervals at once, without batteries or windows (intervals are independent).

Tolerances: DLMPs 1e-3 EUR/kWh at every bus and interval (issue 10); curtailment per PV and the
slack's import 1e-4 of the interval's available PV [kW]; voltages 1e-4 p.u.; branch currents
(lines, then transformers) 1e-3 relative. The OPF's interior-point tolerance (PIPS, 1e-6 relative) is below all of them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from lemgrid.assets.tables import Batteries, EnergyWindows
from lemgrid.market.community_constrained import clear_community_constrained
from lemgrid.grid.convert import network_from_pandapower
from lemgrid.grid.kpis import GridLimits
from lemgrid.market.community import CommunityProblem

IMPORT_EUR_PER_KWH = 0.30
EXPORT_EUR_PER_KWH = 0.08
CURTAILMENT_EUR_PER_KWH = 0.08
DT_H = 0.25

DLMP_TOL_EUR_PER_KWH = 1e-3
POWER_TOL_SHARE = 1e-4  # of the interval's available PV [kW]
VM_TOL_PU = 1e-4
CURRENT_RTOL = 1e-3


@dataclass(frozen=True)
class Case:
    """A grid, its limits and a few snapshots: load scale and available PV per PV bus [kW]."""

    name: str
    net: object  # pandapower net without sgens or costs
    limits: GridLimits
    pv_bus_names: tuple[str, ...]
    load_scale: tuple[float, ...]
    pv_kw: np.ndarray  # (T, N)
    binding: str  # the DLMP component the limit shows up in


def ieee33_voltage() -> Case:
    """Baran & Wu's feeder at 30 % load with PV on the five laterals: the voltage rise at the
    ends of the main feeder and a lateral hits 1.03 p.u."""
    net = pn.case33bw()
    net.poly_cost.drop(net.poly_cost.index, inplace=True)
    net.load[["p_mw", "q_mvar"]] *= 0.3
    share = np.array([1.0, 0.7, 0.8, 0.6, 0.9])
    return Case(
        "ieee33-voltage", net, GridLimits(vm_min_pu=0.9, vm_max_pu=1.03, max_loading_percent=100),
        ("17", "32", "24", "14", "29"), (1.0, 1.0, 1.0, 1.0),
        np.outer([600.0, 800.0, 1000.0, 1200.0], share), "voltage")


def semiurb4_line() -> Case:
    """SimBench's semi-urban LV feeder (400 kVA transformer, 270 A cables): 230-300 kW of PV at
    bus 18 overloads the cable from the substation, neither the transformer nor the voltage band
    binds. Two snapshots export, one imports (full load)."""
    import simbench as sb

    net = sb.get_simbench_net("1-LV-semiurb4--0-sw")
    for table in ("sgen", "storage", "poly_cost", "pwl_cost"):
        net[table].drop(net[table].index, inplace=True)
    return Case(
        "semiurb4-line", net, GridLimits(vm_min_pu=0.9, vm_max_pu=1.10, max_loading_percent=100),
        ("LV4.101 Bus 18", "LV4.101 Bus 44"), (0.3, 0.3, 1.0),
        np.array([[230.0, 30.0], [300.0, 60.0], [300.0, 60.0]]), "congestion")


def bus_index(net, name: str) -> int:
    return int(net.bus.index[net.bus["name"].astype(str) == name][0])


def runopp_snapshot(case: Case, t: int):
    """pandapower's AC OPF of interval t, built from the pandapower net only."""
    net = copy.deepcopy(case.net)
    net.load[["p_mw", "q_mvar"]] *= case.load_scale[t]
    slack_bus = net.ext_grid.bus.iloc[0]
    net.bus["min_vm_pu"] = case.limits.vm_min_pu
    net.bus["max_vm_pu"] = case.limits.vm_max_pu
    # The external grid holds its voltage set point; its bus is no part of the band.
    net.bus.loc[slack_bus, ["min_vm_pu", "max_vm_pu"]] = [0.0, 2.0]
    net.ext_grid["controllable"] = False
    net.ext_grid[["min_p_mw", "max_p_mw", "min_q_mvar", "max_q_mvar"]] = [-100, 100, -100, 100]
    net.line["max_loading_percent"] = case.limits.max_loading_percent
    if len(net.trafo):
        net.trafo["max_loading_percent"] = case.limits.max_loading_percent
        # pandapower's OPF does not converge with SimBench's 150 degree vector group; with one
        # source in a radial net the shift changes angles only, not magnitudes, flows or losses.
        net.trafo["shift_degree"] = 0.0
    for name, p_kw in zip(case.pv_bus_names, case.pv_kw[t], strict=True):
        sgen = pp.create_sgen(net, bus_index(net, name), p_mw=p_kw / 1e3, q_mvar=0.0,
                              controllable=True, min_p_mw=0.0, max_p_mw=p_kw / 1e3,
                              min_q_mvar=0.0, max_q_mvar=0.0)
        pp.create_poly_cost(net, sgen, "sgen", cp1_eur_per_mw=-CURTAILMENT_EUR_PER_KWH * 1e3)
    pp.create_pwl_cost(net, net.ext_grid.index[0], "ext_grid",
                       [[-100, 0, EXPORT_EUR_PER_KWH * 1e3], [0, 100, IMPORT_EUR_PER_KWH * 1e3]])
    pp.runopp(net, init="pf", numba=False)
    return net


def lemgrid_clearing(case: Case):
    network = network_from_pandapower(case.net, case.name)
    n_t, n = case.pv_kw.shape
    bus = np.array([network.bus_position(name) for name in case.pv_bus_names])
    problem = CommunityProblem(
        ids=np.array([f"pv {name}" for name in case.pv_bus_names]), bus=bus, dt_h=DT_H,
        load_p_kw=np.zeros((n_t, n)), pv_p_kw=case.pv_kw,
        kinds={"battery": Batteries.empty(), "energy_window": EnergyWindows.empty()},
        import_eur_per_kwh=np.full(n_t, IMPORT_EUR_PER_KWH),
        export_eur_per_kwh=np.full(n_t, EXPORT_EUR_PER_KWH),
        curtailment_eur_per_kwh=CURTAILMENT_EUR_PER_KWH)
    load = case.net.load
    load_bus = np.array([network.bus_position(str(case.net.bus.name[b])) for b in load.bus])
    scale = np.asarray(case.load_scale)[:, None]
    p_kw = np.zeros((n_t, network.n_bus))
    q_kvar = np.zeros((n_t, network.n_bus))
    np.add.at(p_kw, (slice(None), load_bus), -scale * load.p_mw.to_numpy() * 1e3)
    np.add.at(q_kvar, (slice(None), load_bus), -scale * load.q_mvar.to_numpy() * 1e3)
    return network, clear_community_constrained(problem, network, p_kw, q_kvar, case.limits)


@pytest.fixture(scope="module", params=[ieee33_voltage, semiurb4_line], ids=lambda f: f.__name__)
def compared(request):
    case = request.param()
    network, clearing = lemgrid_clearing(case)
    return case, network, clearing, [runopp_snapshot(case, t) for t in range(len(case.pv_kw))]


def test_the_limit_binds_in_the_reference_and_the_market_alone_violates_it(compared):
    case, _, clearing, opf = compared
    assert not clearing.unconstrained_validation.within()
    for t, ref in enumerate(opf):
        assert case.pv_kw[t].sum() - ref.res_sgen.p_mw.sum() * 1e3 > 1.0  # PV is curtailed
        if case.binding == "voltage":
            assert ref.res_bus.vm_pu.max() == pytest.approx(case.limits.vm_max_pu, abs=1e-6)
        else:
            assert ref.res_line.loading_percent.max() == pytest.approx(100.0, abs=1e-2)
            assert ref.res_trafo.loading_percent.max() < 99.0
            assert ref.res_bus.vm_pu.max() < case.limits.vm_max_pu - 0.01


def test_dlmps_equal_runopp_lam_p_at_every_bus(compared):
    case, network, clearing, opf = compared
    r = clearing.result
    for t, ref in enumerate(opf):
        pos = [network.bus_position(str(name)) for name in ref.bus.name]
        lam_eur_per_kwh = ref.res_bus.lam_p.to_numpy() / 1e3
        np.testing.assert_allclose(r.bus_price_eur_per_kwh[t, pos], lam_eur_per_kwh,
                                   atol=DLMP_TOL_EUR_PER_KWH, rtol=0, err_msg=f"interval {t}")
    # The decomposition still adds up, and the limit shows up where it should.
    np.testing.assert_allclose(sum(r.dlmp_components.values()), r.bus_price_eur_per_kwh,
                               atol=1e-9)
    assert (np.abs(r.dlmp_components[case.binding]).max(axis=1) > 1e-3).all()


def test_curtailment_flows_and_voltages_equal_the_opf(compared):
    case, network, clearing, opf = compared
    r, ac = clearing.result, clearing.validation.result
    for t, ref in enumerate(opf):
        power_tol_kw = POWER_TOL_SHARE * case.pv_kw[t].sum()
        curtailed_kw = case.pv_kw[t] - ref.res_sgen.p_mw.to_numpy() * 1e3
        np.testing.assert_allclose(r.curtailment_kw[t], curtailed_kw, atol=power_tol_kw, rtol=0)
        assert ac.p_slack_kw[t] == pytest.approx(ref.res_ext_grid.p_mw.iloc[0] * 1e3,
                                                 abs=power_tol_kw)
        pos = [network.bus_position(str(name)) for name in ref.bus.name]
        np.testing.assert_allclose(ac.vm_pu[t, pos], ref.res_bus.vm_pu, atol=VM_TOL_PU, rtol=0)
        ref_i_ka = np.concatenate([
            ref.res_line.i_ka[ref.line.in_service].to_numpy(),
            ref.res_trafo[["i_hv_ka", "i_lv_ka"]].max(axis=1)[ref.trafo.in_service].to_numpy()])
        np.testing.assert_allclose(ac.i_ka[t], ref_i_ka, rtol=CURRENT_RTOL, atol=1e-6)
