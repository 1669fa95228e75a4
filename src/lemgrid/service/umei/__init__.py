"""UMEI, the flexibility market platforms' public API (EUniversal; NODES and N-SIDE), on
``lemgrid serve`` under ``/umei``: portfolios, markets, flexibility zones, baseline intervals,
meter readings, orders, the public book and trades over lemgrid's DSO flexibility market
(:mod:`lemgrid.service.grid`), with RFC 7807 problem details and bearer tokens from a signed
challenge. The mapping is ``docs/umei.md``."""

from lemgrid.service.umei.routes import PREFIX, UNSUPPORTED, add_routes

__all__ = ["PREFIX", "UNSUPPORTED", "add_routes"]
