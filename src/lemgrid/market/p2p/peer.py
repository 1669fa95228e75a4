"""Message-passing reference of the P2P consensus ADMM: one object per peer, for small markets.

Each :class:`Peer` holds only its own private data (cost, bounds, the differentiation cost it
attaches to each partner) and, per product, its own proposal, the partner's last proposal and the
pair price. A round is: every peer solves its local sub-problem and *sends* its proposals; every
peer *receives* its partners' proposals and updates consensus and prices on its own. The only
shared facts are the product list and whether each side can trade in an interval (its sign
flexibility), exchanged once as a handshake. This is the same algorithm as
:func:`lemgrid.market.p2p.admm.solve_p2p_admm`, written the slow, honest way: tests check that both
produce the same iterates. Its local solver is an independent exact method (enumerating the
breakpoints of the piecewise-linear optimality condition) rather than the vectorised Newton.

References
----------
.. [1] T. Sorin, L. Bobo, P. Pinson, "Consensus-based approach to peer-to-peer electricity markets
   with product differentiation", IEEE Trans. Power Systems 34(2), 994-1004, 2019.
"""

from __future__ import annotations

import numpy as np

from lemgrid.market.p2p.problem import P2PProblem, check_feasible

__all__ = ["Peer", "solve_local_breakpoints", "run_message_passing"]


def solve_local_breakpoints(w0, lo, hi, rho, a_kwh2, b_kwh, e_min, e_max):
    """Exact local sub-problem of one peer by breakpoint enumeration (scalar reference).

    Solves ``min a e^2 + b e + sum rho/2 (t - w0)^2`` s.t. ``e = sum t``, ``lo <= t <= hi``,
    ``e_min <= e <= e_max``, the same problem as
    :func:`lemgrid.market.p2p.admm.solve_local_subproblems` for one peer.

    Parameters
    ----------
    w0, lo, hi : ndarray, shape (L,)
        Targets and bounds of the signed trades [kWh].
    rho : float
        ADMM penalty [EUR/kWh^2].
    a_kwh2, b_kwh, e_min, e_max : float
        Cost ``a e^2 + b e`` [EUR] and energy bounds [kWh].

    Returns
    -------
    mu : float
        Marginal value of energy [EUR/kWh].
    t : ndarray, shape (L,)
        Optimal trades [kWh].
    """

    def trades(mu):
        return np.clip(w0 - mu / rho, lo, hi)

    def phi(mu):
        s = trades(mu).sum()
        if a_kwh2 > 0:
            own = np.clip((mu - b_kwh) / (2 * a_kwh2), e_min, e_max)
        else:
            own = e_min if mu < b_kwh else e_max if mu > b_kwh else np.clip(s, e_min, e_max)
        return s - own

    # phi is nonincreasing and linear between these points.
    points = np.concatenate([rho * (w0 - hi), rho * (w0 - lo), [b_kwh + 2 * a_kwh2 * e_min],
                             [b_kwh + 2 * a_kwh2 * e_max]])
    points = np.unique(points)
    values = np.array([phi(p) for p in points])
    scale = 1e-11 * (1.0 + abs(e_min) + abs(e_max))
    first = int(np.argmax(values <= scale)) if (values <= scale).any() else len(points) - 1
    if abs(values[first]) <= scale or first == 0:
        mu = points[first]
    else:
        left, right = points[first - 1], points[first]
        # Linear on the open segment: two interior samples give the line exactly.
        m1, m2 = left + (right - left) / 3, left + 2 * (right - left) / 3
        f1, f2 = phi(m1), phi(m2)
        mu = m1 - f1 * (m2 - m1) / (f2 - f1) if f2 != f1 else right
    return float(mu), trades(mu)


class Peer:
    """One peer of the P2P market, knowing only its own data and the messages it receives.

    Parameters
    ----------
    a_kwh2, b_kwh : ndarray, shape (I,)
        Private cost ``a e^2 + b e`` [EUR/kWh^2, EUR/kWh] per interval.
    e_min, e_max : ndarray, shape (I,)
        Private energy bounds [kWh].
    products : list of tuple
        ``(product_id, role, own_cost_eur_per_kwh)``; role +1 sells, -1 buys.
    own_limit_kwh : dict
        ``product_id -> ndarray (I,)``: the peer's own bound on the product (0 when closed).
    price0_eur_per_kwh : float
        Starting price of every pair [EUR/kWh].
    """

    def __init__(self, a_kwh2, b_kwh, e_min, e_max, products, own_limit_kwh, price0_eur_per_kwh=0.0):
        self._a, self._b, self._emin, self._emax = a_kwh2, b_kwh, e_min, e_max
        self._products = products
        self._limit = own_limit_kwh
        n_int = len(a_kwh2)
        self.proposal = {pid: np.zeros(n_int) for pid, _, _ in products}
        self._z = {pid: np.zeros(n_int) for pid, _, _ in products}
        self.price = {pid: np.full(n_int, float(price0_eur_per_kwh)) for pid, _, _ in products}
        self._inbox: dict = {}

    def propose(self, rho: float) -> dict:
        """Solve the local sub-problem of every interval; return the messages (proposals) to send."""
        for i in range(len(self._a)):
            w0, lo, hi = [], [], []
            for pid, role, cost in self._products:
                z, lam, limit = self._z[pid][i], self.price[pid][i], self._limit[pid][i]
                if role > 0:  # sells: t = x, earns lam
                    w0.append(z - (cost - lam) / rho)
                    lo.append(0.0)
                    hi.append(limit)
                else:  # buys: t = -x, pays lam
                    w0.append(-z + (cost + lam) / rho)
                    lo.append(-limit)
                    hi.append(0.0)
            _, t = solve_local_breakpoints(
                np.array(w0), np.array(lo), np.array(hi), rho,
                self._a[i], self._b[i], self._emin[i], self._emax[i],
            )
            for (pid, role, _), ti in zip(self._products, t):
                self.proposal[pid][i] = role * ti
        return {pid: self.proposal[pid].copy() for pid, _, _ in self._products}

    def receive(self, product_id, partner_proposal) -> None:
        """Store the partner's proposal for a product."""
        self._inbox[product_id] = partner_proposal

    def update(self, rho: float, alpha: float) -> None:
        """Consensus and price update from the own and the partner's proposal (both sides alike)."""
        for pid, role, _ in self._products:
            mine, theirs = self.proposal[pid], self._inbox[pid]
            x_seller, x_buyer = (mine, theirs) if role > 0 else (theirs, mine)
            self._z[pid] = alpha * 0.5 * (x_seller + x_buyer) + (1 - alpha) * self._z[pid]
            self.price[pid] = self.price[pid] + 0.5 * alpha * rho * (x_buyer - x_seller)

    @property
    def energy_kwh(self) -> np.ndarray:
        """Own net energy per interval [kWh], sales positive."""
        total = np.zeros(len(self._a))
        for pid, role, _ in self._products:
            total += role * self.proposal[pid]
        return total


def run_message_passing(
    problem: P2PProblem, *, rho_eur_per_kwh2: float, iterations: int, alpha: float = 1.0,
    price0_eur_per_kwh: float = 0.0,
):
    """Run the decentralised ADMM with one :class:`Peer` per peer and explicit messages.

    Parameters
    ----------
    problem : P2PProblem
        Used only to hand each peer its *own* data.
    rho_eur_per_kwh2 : float
        Fixed ADMM penalty [EUR/kWh^2].
    iterations : int
        Number of rounds.
    alpha : float
        Over-relaxation.
    price0_eur_per_kwh : float
        Starting pair price [EUR/kWh].

    Returns
    -------
    history : list of dict
        Per round: ``seller_kwh``, ``buyer_kwh``, ``price_eur_per_kwh`` (I, K) and ``e_kwh`` (I, N).
    """
    from lemgrid.market.p2p.admm import local_bounds_kwh

    check_feasible(problem)
    sell_lim, buy_lim = local_bounds_kwh(problem)
    n_k = problem.n_products
    peers = []
    for n in range(problem.n_peers):
        sells = np.flatnonzero(problem.seller == n)
        buys = np.flatnonzero(problem.buyer == n)
        products = [(int(k), +1, float(problem.seller_cost_eur_per_kwh[k])) for k in sells]
        products += [(int(k), -1, float(problem.buyer_cost_eur_per_kwh[k])) for k in buys]
        limits = {int(k): sell_lim[:, k] for k in sells} | {int(k): buy_lim[:, k] for k in buys}
        peers.append(
            Peer(problem.a_eur_per_kwh2[:, n], problem.b_eur_per_kwh[:, n],
                 problem.e_min_kwh[:, n], problem.e_max_kwh[:, n], products, limits,
                 price0_eur_per_kwh)
        )
    history = []
    for _ in range(iterations):
        sent = [peer.propose(rho_eur_per_kwh2) for peer in peers]
        for k in range(n_k):  # the network delivers each proposal to the other side
            s, b = int(problem.seller[k]), int(problem.buyer[k])
            peers[b].receive(k, sent[s][k])
            peers[s].receive(k, sent[b][k])
        for peer in peers:
            peer.update(rho_eur_per_kwh2, alpha)
        history.append(
            {
                "seller_kwh": np.stack([peers[problem.seller[k]].proposal[k] for k in range(n_k)], 1),
                "buyer_kwh": np.stack([peers[problem.buyer[k]].proposal[k] for k in range(n_k)], 1),
                "price_eur_per_kwh": np.stack(
                    [peers[problem.seller[k]].price[k] for k in range(n_k)], 1
                ),
                "e_kwh": np.stack([p.energy_kwh for p in peers], 1),
            }
        )
    return history
