"""``community``: a manager schedules every member's assets (one LP), shares the saving."""

from __future__ import annotations

from lemgrid.scenario.config import CommunityOptions as Options

name = "community"
summary = ("community manager schedules all assets (LP); internal price, savings shared so "
           "nobody pays more than alone; `network: constrained` is `community-constrained`")
fixed_options = {"network": "ignore"}


def clear_session(session, options: Options):
    """The community market without the grid's limits."""
    from lemgrid.sim.designs import community

    return community(session, options, constrained=False)
