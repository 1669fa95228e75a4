"""``none``: business-as-usual, no local market; every kWh with the retailer."""

from __future__ import annotations

from lemgrid.scenario.config import NoMarketOptions as Options

name = "none"
summary = "no local market: assets by their owners' rules, every kWh with the retailer"
local_market = False


def clear_session(session, options: Options):
    """The owners' own plan; all of it with the retailer."""
    from lemgrid.sim.designs import retail_only_session

    return retail_only_session(session)
