"""How a participant runs its own assets when no community manager does it."""

from __future__ import annotations

import numpy as np

from lemgrid.assets.tables import Batteries, EnergyWindows


def self_consumption_battery(net_kw: np.ndarray, batteries: Batteries, dt_h: float
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy self-consumption: charge from the owner's surplus, discharge into its deficit.

    Parameters
    ----------
    net_kw : ndarray, shape (T, N)
        Owner's net position before the battery (PV minus load minus other consumption) [kW].
    batteries : Batteries
    dt_h : float

    Returns
    -------
    battery_kw : ndarray, shape (T, B)
        Net output of each battery (discharge positive) [kW] (:func:`to_owners` sums them up).
    soc_kwh : ndarray, shape (T, B)
        State of charge at the end of each interval [kWh].
    """
    n_t, n = net_kw.shape
    out = np.zeros((n_t, len(batteries)))
    soc = np.zeros((n_t, len(batteries)))
    if not len(batteries):
        return out, soc
    b = batteries
    e_min, e_max = b.soc_min * b.capacity_kwh, b.soc_max * b.capacity_kwh
    # Batteries of the same owner take turns: the first sees the owner's net, the next the rest.
    rank = np.zeros(len(b), dtype=int)
    for owner in np.unique(b.owner):
        same = np.flatnonzero(b.owner == owner)
        rank[same] = np.arange(len(same))
    level = b.soc_initial * b.capacity_kwh
    residual = net_kw.copy()
    for t in range(n_t):
        for r in range(rank.max() + 1):
            k = np.flatnonzero(rank == r)
            owner = b.owner[k]
            need = residual[t, owner]
            charge = np.minimum.reduce([np.maximum(need, 0), b.power_kw[k],
                                        (e_max[k] - level[k]) / (b.eta_charge[k] * dt_h)])
            discharge = np.minimum.reduce([np.maximum(-need, 0), b.power_kw[k],
                                           (level[k] - e_min[k]) * b.eta_discharge[k] / dt_h])
            charge, discharge = np.maximum(charge, 0), np.maximum(discharge, 0)
            level[k] += (b.eta_charge[k] * charge - discharge / b.eta_discharge[k]) * dt_h
            residual[t, owner] += discharge - charge
            out[t, k] = discharge - charge
        soc[t] = level
    return out, soc


def charge_on_arrival(windows: EnergyWindows, n_intervals: int, dt_h: float) -> np.ndarray:
    """EVs and shiftable loads draw full power from the start of their window until done.

    Returns
    -------
    ndarray, shape (T, S)
        Power drawn by each session [kW] (:func:`to_owners` sums them up).
    """
    out = np.zeros((n_intervals, len(windows)))
    for k in range(len(windows)):
        power = windows.power_kw[k]
        full, rest = divmod(windows.energy_kwh[k], power * dt_h)
        start = int(windows.start[k])
        stop = min(start + int(full), int(windows.stop[k]))
        out[start:stop, k] = power
        if rest > 1e-12 and stop < windows.stop[k]:
            out[stop, k] = rest / dt_h
    return out


