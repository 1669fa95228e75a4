"""``uniform``: participants schedule their own assets and bid their net positions in
the order market; what does not match goes to the retailer."""

from __future__ import annotations

from lemgrid.scenario.config import OrderOptions as Options

name = "uniform"
summary = "uniform-price double auction per interval (pay-as-clear)"


def clear_session(session, options: Options):
    """Agents' orders cleared by the uniform mechanism; the rest with the retailer."""
    from lemgrid.sim.designs import order_market

    return order_market(session, "uniform")
