"""Bidding agents: how participants schedule their own assets and price their orders.

- :mod:`lemgrid.agents.dispatch`: rule-based operation of batteries (self-consumption) and of EV
  charging / shiftable loads (as soon as possible), the business-as-usual of their asset kinds
  (:mod:`lemgrid.assets.battery`, :mod:`lemgrid.assets.windows`); the optimising prosumer (an LP
  against a price forecast) is :func:`lemgrid.sim.designs.own_schedules`;
- :mod:`lemgrid.agents.strategies`: limit prices of price takers, zero-intelligence-constrained
  (ZI-C) and ZIP traders.
"""
