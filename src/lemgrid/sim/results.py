"""What a simulation run produces: arrays per interval and participant, bills and KPIs.

This is the contract between the simulator (``lemgrid.sim.runner``), the writers of
``intervals.parquet`` / ``bills.csv`` / ``kpis.json`` and the HTML report (``lemgrid.report``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Columns of bills.csv, in order.
BILL_COLUMNS = ("participant", "cost_eur", "bau_cost_eur", "savings_eur", "import_kwh",
                "export_kwh", "local_bought_kwh", "local_sold_kwh")


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """One design simulated over a scenario's horizon.

    Attributes
    ----------
    scenario : str
        Scenario name.
    design : str
        Market design (``none`` is business-as-usual).
    grid : str
        Grid spec.
    time_index : pandas.DatetimeIndex, shape (T,)
    dt_h : float
        Interval length [h].
    participant_ids : ndarray of str, shape (N,)
    participant_bus : ndarray of str, shape (N,)
        Bus name of each participant.
    bus_names, branch_names : ndarray of str
    tariffs : dict
        ``import_eur_per_kwh``, ``export_eur_per_kwh``, ``network_eur_per_kwh`` (for plots).
    limits : dict
        ``vm_min_pu``, ``vm_max_pu``, ``max_loading_percent``.
    scheduled_kw, metered_kw : ndarray, shape (T, N)
        Scheduled (market result) and metered (delivered) net injection [kW], export positive.
    local_bought_kwh, local_sold_kwh : ndarray, shape (T, N)
        Energy bought from / sold to other participants (or the community pool) [kWh].
    grid_import_kwh, grid_export_kwh : ndarray, shape (T, N)
        Energy bought from / sold to the retailer, imbalance included [kWh].
    cost_eur : ndarray, shape (T, N)
        Everything a participant pays in each interval (negative: it is paid) [EUR]: local trades,
        grid energy, network charges, levies, fixed fees, imbalance, its share of market surplus.
    bau_cost_eur : ndarray, shape (T, N)
        The same participant's cost under business-as-usual (no local market) [EUR].
    price_eur_per_kwh : ndarray, shape (T,)
        Local market price (clearing price, internal price or volume-weighted P2P price; NaN
        where nothing traded locally) [EUR/kWh].
    local_volume_kwh : ndarray, shape (T,)
        Energy traded between participants [kWh].
    transformer_p_kw, bau_transformer_p_kw : ndarray, shape (T,)
        Import at the substation (export negative) in the delivered AC power flow, with the design
        and under business-as-usual [kW].
    losses_kw : ndarray, shape (T,)
    vm_pu : ndarray, shape (T, n_bus)
        Delivered bus voltages [p.u.].
    loading_percent : ndarray, shape (T, n_branch)
    kpis : dict
        Scalar KPIs (see :mod:`lemgrid.settlement.kpis`).
    extra_intervals : dict[str, ndarray (T,)]
        More per-interval series for intervals.parquet (design-specific).
    tables : dict[str, pandas.DataFrame]
        More output tables: the designs' (``orders``, ``trades``, ``dlmp_components``,
        ``p2p_trades``; written as Parquet) and the DSO's (``grid_state``, ``flex_activations``,
        ...; written as CSV).
    participant_series : dict[str, ndarray (T, N)]
        Per interval and participant: schedule and delivery [kW], battery output [kW] and stored
        energy [kWh], energies with the grid, the market and the retailer, imbalance [kWh], and
        the bill by component [EUR] (participant_intervals.parquet; see
        :meth:`participant_intervals`).
    seconds : float
        Wall time of the run.
    """

    scenario: str
    design: str
    grid: str
    time_index: pd.DatetimeIndex
    dt_h: float
    participant_ids: np.ndarray
    participant_bus: np.ndarray
    bus_names: np.ndarray
    branch_names: np.ndarray
    tariffs: dict
    limits: dict
    scheduled_kw: np.ndarray
    metered_kw: np.ndarray
    local_bought_kwh: np.ndarray
    local_sold_kwh: np.ndarray
    grid_import_kwh: np.ndarray
    grid_export_kwh: np.ndarray
    cost_eur: np.ndarray
    bau_cost_eur: np.ndarray
    price_eur_per_kwh: np.ndarray
    local_volume_kwh: np.ndarray
    transformer_p_kw: np.ndarray
    bau_transformer_p_kw: np.ndarray
    losses_kw: np.ndarray
    vm_pu: np.ndarray
    loading_percent: np.ndarray
    kpis: dict = field(default_factory=dict)
    extra_intervals: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    participant_series: dict = field(default_factory=dict)
    seconds: float = 0.0

    def bills(self) -> pd.DataFrame:
        """One row per participant over the horizon (the columns of bills.csv)."""
        cost = self.cost_eur.sum(axis=0)
        bau = self.bau_cost_eur.sum(axis=0)
        return pd.DataFrame({
            "participant": self.participant_ids,
            "cost_eur": cost,
            "bau_cost_eur": bau,
            "savings_eur": bau - cost,
            "import_kwh": self.grid_import_kwh.sum(axis=0),
            "export_kwh": self.grid_export_kwh.sum(axis=0),
            "local_bought_kwh": self.local_bought_kwh.sum(axis=0),
            "local_sold_kwh": self.local_sold_kwh.sum(axis=0),
        }, columns=list(BILL_COLUMNS))

    def intervals(self) -> pd.DataFrame:
        """Per-interval series (intervals.parquet)."""
        frame = pd.DataFrame({
            "price_eur_per_kwh": self.price_eur_per_kwh,
            "local_volume_kwh": self.local_volume_kwh,
            "transformer_p_kw": self.transformer_p_kw,
            "bau_transformer_p_kw": self.bau_transformer_p_kw,
            "losses_kw": self.losses_kw,
            "vm_min_pu": np.nanmin(self.vm_pu, axis=1),
            "vm_max_pu": np.nanmax(self.vm_pu, axis=1),
            "max_loading_percent": np.nanmax(self.loading_percent, axis=1)
            if self.loading_percent.shape[1] else np.zeros(len(self.time_index)),
            "scheduled_net_kw": self.scheduled_kw.sum(axis=1),
            "metered_net_kw": self.metered_kw.sum(axis=1),
            "cost_eur": self.cost_eur.sum(axis=1),
            "bau_cost_eur": self.bau_cost_eur.sum(axis=1),
            **self.extra_intervals,
        }, index=pd.Index(self.time_index, name="interval"))
        return frame

    def participant_frame(self, name: str) -> pd.DataFrame:
        """One per-interval, per-participant series as a table: the intervals (tz-aware) as
        index, the participant ids as columns.

        Parameters
        ----------
        name : str
            ``scheduled_kw``, ``metered_kw``, ``cost_eur``, ``bau_cost_eur``, ``local_bought_kwh``,
            ``local_sold_kwh``, ``grid_import_kwh``, ``grid_export_kwh`` or any column of
            :meth:`participant_intervals` (``battery_kw``, ``retail_import_kwh``, ...).
        """
        values = getattr(self, name, None) if name in self.__dataclass_fields__ else None
        if values is None or np.ndim(values) != 2:
            values = self.participant_series.get(name)
        if values is None:
            from lemgrid.errors import InputError

            raise InputError(f"unknown participant series {name!r}; choose one of "
                             f"{', '.join(sorted(self.participant_series))}")
        return pd.DataFrame(np.asarray(values), index=pd.Index(self.time_index, name="interval"),
                            columns=pd.Index(self.participant_ids.astype(str),
                                             name="participant"))

    def bus_frame(self) -> pd.DataFrame:
        """Delivered bus voltages [p.u.]: intervals as index, bus names as columns."""
        return pd.DataFrame(self.vm_pu, index=pd.Index(self.time_index, name="interval"),
                            columns=pd.Index(self.bus_names.astype(str), name="bus"))

    def branch_frame(self) -> pd.DataFrame:
        """Delivered branch loadings [%]: intervals as index, branch names as columns."""
        return pd.DataFrame(self.loading_percent,
                            index=pd.Index(self.time_index, name="interval"),
                            columns=pd.Index(self.branch_names.astype(str), name="branch"))

    def participant_intervals(self) -> pd.DataFrame:
        """One row per interval and participant (participant_intervals.parquet): the columns of
        ``participant_series``, enough to recompute every bill by hand."""
        n_t, n = len(self.time_index), len(self.participant_ids)
        frame = pd.DataFrame({
            "interval": np.repeat(pd.DatetimeIndex(self.time_index), n),
            "participant": np.tile(self.participant_ids.astype(str), n_t),
            **{name: np.asarray(values).reshape(n_t * n)
               for name, values in self.participant_series.items()},
        })
        return frame
