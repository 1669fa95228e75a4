"""``p2p``: bilateral trades between participants by consensus ADMM (product differentiation)."""

from __future__ import annotations

from lemgrid.scenario.config import P2POptions as Options

name = "p2p"
summary = "peer-to-peer: bilateral trades by consensus ADMM, network charges by distance"


def clear_session(session, options: Options):
    """Participants' net positions traded bilaterally; the rest with the retailer."""
    from lemgrid.sim.designs import p2p

    return p2p(session, options)
