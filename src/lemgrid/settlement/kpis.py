"""KPIs of a simulated market: money, fairness, local energy and the grid.

Definitions (energies over the horizon):

- *savings* of a participant: its business-as-usual cost minus its cost with the market;
  *social welfare* (gain) is the sum of savings: demand is inflexible, so the utility of the energy
  consumed is the same in both and welfare changes only through costs;
- *Gini of savings*: mean absolute difference of the savings over twice the absolute mean (the
  Gini coefficient, generalised to savings that may be negative; 0 = equal shares);
- *self-sufficiency*: share of consumption not imported from outside the community
  (1 - import / consumption); *self-consumption*: share of local generation not exported
  (1 - export / generation); for the community, import and export are those of the community as a
  whole (its summed metered position), for a participant its own metered import / export that no
  local trade covers (``Bill.import_kwh`` / ``export_kwh``: at most what it consumed / generated,
  so the shares lie within [0, 1]);
- *min / mean / max savings* over the participants (None without participants);
- grid KPIs are taken from the AC power flow of what was delivered.
"""

from __future__ import annotations

import numpy as np

from lemgrid.settlement.bills import Bill


def _share(value):
    """A share computed as 1 - a / b, with the rounding of a == b (or a == 0) taken off; anything
    further outside [0, 1] is left as it is, for the tests to catch."""
    value = np.asarray(value, dtype=float)
    snapped = np.where((value < 0) & (value > -1e-9), 0.0, value)
    return np.where((snapped > 1) & (snapped < 1 + 1e-9), 1.0, snapped)


def gini(values: np.ndarray) -> float | None:
    """Gini coefficient (mean absolute difference / (2 |mean|)); None if the mean is zero."""
    values = np.asarray(values, float)
    mean = values.mean() if len(values) else 0.0
    if abs(mean) < 1e-12:
        return None
    diff = np.abs(values[:, None] - values[None, :]).mean()
    return float(diff / (2 * abs(mean)))


def market_kpis(bill: Bill, bau_bill: Bill, metered_kw: np.ndarray, load_kw: np.ndarray,
                pv_kw: np.ndarray, local_volume_kwh: np.ndarray, dt_h: float) -> dict:
    """Money and energy KPIs.

    Parameters
    ----------
    bill, bau_bill : Bill
        With the market and under business-as-usual.
    metered_kw : ndarray (T, N)
        Delivered net injections [kW].
    load_kw, pv_kw : ndarray (T, N)
        Delivered consumption (inflexible load plus EVs, shiftable loads and battery charging)
        and delivered generation (PV after curtailment plus battery discharge) [kW].
    local_volume_kwh : ndarray (T,)
    dt_h : float
    """
    cost = bill.cost_eur.sum(axis=0)
    bau = bau_bill.cost_eur.sum(axis=0)
    savings = bau - cost
    consumption = load_kw.sum(axis=0) * dt_h
    generation = pv_kw.sum(axis=0) * dt_h
    community_net = metered_kw.sum(axis=1) * dt_h
    community_import = np.clip(-community_net, 0, None).sum()
    community_export = np.clip(community_net, 0, None).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        own_sufficiency = _share(1 - bill.import_kwh.sum(axis=0) / consumption)
        own_consumption = _share(1 - bill.export_kwh.sum(axis=0) / generation)
    producers = generation > 1e-9
    return {
        "total_cost_eur": float(cost.sum()),
        "bau_total_cost_eur": float(bau.sum()),
        "social_welfare_eur": float(savings.sum()),
        "total_savings_eur": float(savings.sum()),
        "savings_per_participant_eur": float(savings.mean()) if len(savings) else None,
        "min_savings_eur": float(savings.min()) if len(savings) else None,
        "max_savings_eur": float(savings.max()) if len(savings) else None,
        "share_better_off": float((savings > 0.005).mean()) if len(savings) else 0.0,
        "share_worse_off": float((savings < -0.005).mean()) if len(savings) else 0.0,
        "gini_savings": gini(savings),
        "self_sufficiency": float(_share(1 - community_import / consumption.sum()))
        if consumption.sum() > 0 else None,
        "self_consumption": float(_share(1 - community_export / generation.sum()))
        if generation.sum() > 0 else None,
        "self_sufficiency_participant_mean": float(np.nanmean(own_sufficiency))
        if np.isfinite(own_sufficiency).any() else None,
        "self_consumption_participant_mean": float(np.nanmean(own_consumption[producers]))
        if producers.any() else None,
        "local_traded_kwh": float(local_volume_kwh.sum()),
        "consumption_kwh": float(consumption.sum()),
        "generation_kwh": float(generation.sum()),
        "community_import_kwh": float(community_import),
        "community_export_kwh": float(community_export),
        "imbalance_short_kwh": float(bill.imbalance_short_kwh.sum()),
        "imbalance_long_kwh": float(bill.imbalance_long_kwh.sum()),
        "retailer_eur": float(bill.retailer_eur.sum()),
        "dso_eur": float(bill.dso_eur.sum()),
        "state_eur": float(bill.state_eur.sum()),
        "tso_eur": float(bill.tso_eur.sum()),
        "aggregator_eur": float(bill.aggregator_eur.sum()),
        "budget_gap_eur": bill.budget_gap_eur,
    }
