"""The physical assets of participants: profiles, the column tables of assets, and the asset-kind
registry (:mod:`lemgrid.assets.kinds`) with the heat pump (:mod:`lemgrid.assets.heat_pump`)."""
