"""The physical assets of participants: profiles, the column tables of assets, and the asset-kind
registry (:mod:`lemgrid.assets.kinds`) with lemgrid's kinds: batteries
(:mod:`lemgrid.assets.battery`), EV and shiftable-load windows (:mod:`lemgrid.assets.windows`)
and heat pumps (:mod:`lemgrid.assets.heat_pump`)."""
