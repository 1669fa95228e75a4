"""Market participants: who sits at which bus, with which profiles and which flexible assets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lemgrid.assets.tables import KindTableViews


@dataclass(frozen=True, eq=False)
class Participants(KindTableViews):
    """All participants of a scenario, as arrays (participants are columns).

    Attributes
    ----------
    ids : ndarray of str, shape (N,)
    bus : ndarray of int, shape (N,)
        Position of each participant's bus in ``Network.bus_names``.
    load_p_kw, load_q_kvar : ndarray, shape (T, N)
        Inflexible consumption [kW], [kvar].
    pv_p_kw : ndarray, shape (T, N)
        Available local generation (rooftop PV; in MV grids also other SimBench sgens) [kW].
    kinds : dict[str, column table]
        Flexible assets by kind name (:mod:`lemgrid.assets.kinds`: ``battery``,
        ``energy_window`` for EVs and shiftable loads, ``heat_pump``, ...); a kind without
        assets in the scenario has no entry.
    """

    ids: np.ndarray
    bus: np.ndarray
    load_p_kw: np.ndarray
    load_q_kvar: np.ndarray
    pv_p_kw: np.ndarray
    kinds: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def net_p_kw(self) -> np.ndarray:
        """Inflexible net injection, PV minus load [kW], shape (T, N) (export positive)."""
        return self.pv_p_kw - self.load_p_kw

    def index(self, participant_id: str) -> int:
        """Column of a participant id (KeyError if unknown)."""
        matches = np.flatnonzero(self.ids == participant_id)
        if not len(matches):
            raise KeyError(participant_id)
        return int(matches[0])
