"""How a participant runs its own assets when no community manager does it: the rules of the asset
kinds (:mod:`lemgrid.assets.battery`, :mod:`lemgrid.assets.windows`), named here for the agents."""

from __future__ import annotations

from lemgrid.assets.battery import self_consumption_battery
from lemgrid.assets.windows import charge_on_arrival

__all__ = ["charge_on_arrival", "self_consumption_battery"]
