"""Where to draw a feeder's buses: the grid's own geodata when it has some (SimBench grids do),
a layered tree layout computed from the topology otherwise.

Both give one ``(x, y)`` per bus of a :class:`~lemgrid.grid.network.Network`, in the network's
bus order, so that the dashboard can colour buses by ``vm_pu`` and branches by
``loading_percent`` straight from a :class:`~lemgrid.grid.powerflow.PowerFlowResult`.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import numpy as np

from lemgrid.grid.network import Network


def branch_buses(network: Network) -> tuple[np.ndarray, np.ndarray]:
    """The buses at the two ends of every branch, shape (n_branch,) each.

    The network's branches join *nodes* (buses joined by closed bus-bus switches share one);
    each node is drawn at the first bus that maps to it.
    """
    first = np.full(network.n_node, -1, dtype=np.int64)
    for bus in range(network.n_bus - 1, -1, -1):
        node = network.bus_node[bus]
        if node >= 0:
            first[node] = bus
    return first[network.branch_from_node], first[network.branch_to_node]


def computed_layout(network: Network) -> np.ndarray:
    """A layered layout: x is the number of branches from the slack bus (breadth-first), y the
    position among the leaves below, so that each feeder of a radial grid is a horizontal band.

    Returns
    -------
    ndarray, shape (n_bus, 2)
        Coordinates [arbitrary units]; buses not connected to the slack are placed in a column
        to the right of the deepest layer.
    """
    n = network.n_bus
    f, t = branch_buses(network)
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(f.tolist(), t.tolist(), strict=True):
        if a >= 0 and b >= 0 and a != b:
            neighbours[a].append(b)
            neighbours[b].append(a)
    # buses sharing a node sit on the bus that represents it
    node_bus = {int(network.bus_node[b]): b for b in range(n - 1, -1, -1)
                if network.bus_node[b] >= 0}
    parent = np.full(n, -1, dtype=np.int64)
    depth = np.full(n, -1, dtype=np.int64)
    root = node_bus.get(int(network.bus_node[network.slack_bus]), network.slack_bus)
    depth[root] = 0
    order = [root]
    queue = deque([root])
    while queue:
        bus = queue.popleft()
        for nb in neighbours[bus]:
            if depth[nb] < 0:
                depth[nb], parent[nb] = depth[bus] + 1, bus
                order.append(nb)
                queue.append(nb)
    children: list[list[int]] = [[] for _ in range(n)]
    for bus in order[1:]:
        children[int(parent[bus])].append(bus)
    y = np.zeros(n)
    next_leaf = 0.0

    def place(bus: int) -> None:  # leaves in depth-first order, parents centred on children
        nonlocal next_leaf
        stack = [(bus, False)]
        while stack:
            b, done = stack.pop()
            if done or not children[b]:
                if children[b]:
                    y[b] = float(np.mean([y[c] for c in children[b]]))
                else:
                    y[b] = next_leaf
                    next_leaf += 1.0
                continue
            stack.append((b, True))
            stack.extend((c, False) for c in reversed(children[b]))

    place(root)
    x = depth.astype(float)
    deepest = float(depth.max()) if n else 0.0
    for bus in range(n):
        if depth[bus] < 0:
            node = int(network.bus_node[bus])
            rep = node_bus.get(node, bus) if node >= 0 else bus
            if rep != bus and depth[rep] >= 0:
                x[bus], y[bus] = x[rep], y[rep]
            else:
                x[bus], y[bus] = deepest + 1.0, next_leaf
                next_leaf += 1.0
    return np.column_stack([x, -y])


def geodata_layout(net: Any) -> np.ndarray | None:
    """Bus coordinates of a pandapower net, in its bus order, or None if any bus lacks them.

    Reads ``net.bus.geo`` (GeoJSON points, pandapower 3) or ``net.bus_geodata`` (``x``, ``y``,
    pandapower 2).
    """
    bus = net.bus
    if "geo" in bus.columns and bus["geo"].notna().all():
        xy = []
        for text in bus["geo"]:
            point = json.loads(text) if isinstance(text, str) else text
            if not isinstance(point, dict) or point.get("type") != "Point":
                return None
            xy.append(point["coordinates"][:2])
        return np.asarray(xy, dtype=float)
    geo = getattr(net, "bus_geodata", None)
    if geo is not None and len(geo) and set(bus.index) <= set(geo.index):
        xy = geo.loc[bus.index, ["x", "y"]].to_numpy(float)
        return None if np.isnan(xy).any() else xy
    return None


def feeder_layout(network: Network, net: Any = None) -> tuple[np.ndarray, str]:
    """Coordinates of every bus and where they come from (``'geodata'`` or ``'computed'``).

    Parameters
    ----------
    network : Network
    net : pandapower net, optional
        The net the network was converted from (same bus order); its geodata are used when
        every bus has some.
    """
    if net is not None and len(net.bus) == network.n_bus:
        xy = geodata_layout(net)
        if xy is not None:
            return xy, "geodata"
    return computed_layout(network), "computed"
