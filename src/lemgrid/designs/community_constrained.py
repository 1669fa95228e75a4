"""``community-constrained``: the community market within the grid's limits (DLMPs)."""

from __future__ import annotations

from lemgrid.scenario.config import CommunityOptions as Options

name = "community-constrained"
summary = ("community market within the grid's voltage and loading limits, re-linearised AC "
           "(DLMPs)")
fixed_options = {"network": "constrained"}


def clear_session(session, options: Options):
    """The community market within the linearised, AC-checked grid limits."""
    from lemgrid.sim.designs import community

    return community(session, options, constrained=True)
