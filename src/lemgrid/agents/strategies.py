"""Limit prices of bidding agents.

Every agent has a *valuation*: a buyer would otherwise pay the retail price (energy + network
charge, minus the network charge on local trades), a seller would otherwise get the feed-in tariff.
Agents never bid above / ask below their valuation (no trade at a loss).

- price taker: bids its valuation, so it takes whatever the market clears at;
- ZI-C, zero intelligence constrained (Gode & Sunder, "Allocative efficiency of markets with
  zero-intelligence traders", J. Political Economy 101(1), 1993): a uniform random price between
  the feed-in tariff and the retail price, within its own valuation;
- ZIP, zero intelligence plus (Cliff, "Minimal-intelligence agents for bargaining behaviours in
  market-based environments", HP Labs HPL-97-91, 1997): a profit margin on the valuation, adapted
  after every market outcome by the Widrow-Hoff rule with momentum towards a target just beyond the
  last clearing price. Margins are fractions of the spread between feed-in tariff and retail price
  (Cliff's multiplicative margins break down at a zero feed-in tariff).
"""

from __future__ import annotations

import numpy as np

from lemgrid.errors import InputError

STRATEGIES = ("price-taker", "zi-c", "zip", "optimizer")


def random_limits(buyer_value: float, seller_cost: float, shape, rng: np.random.Generator
                  ) -> np.ndarray:
    """ZI-C draws: uniform in [seller_cost, buyer_value] (the range where a trade can help)."""
    if buyer_value < seller_cost:
        raise InputError(f"agents: buyers' valuation ({buyer_value}) is below sellers' cost "
                         f"({seller_cost}); no local trade can benefit both")
    return rng.uniform(seller_cost, buyer_value, shape)


class ZipTraders:
    """Profit margins of ZIP traders, one buyer and one seller margin per participant.

    Parameters
    ----------
    n : int
        Participants (all get a state; only ZIP ones use it).
    buyer_value, seller_cost : float
        Valuations [EUR/kWh].
    learning_rate, momentum, initial_margin : float
        Cliff's beta, gamma and the starting margin.
    rng : numpy.random.Generator
    """

    def __init__(self, n: int, buyer_value: float, seller_cost: float, learning_rate: float,
                 momentum: float, initial_margin: float, rng: np.random.Generator) -> None:
        self.buyer_value, self.seller_cost = buyer_value, seller_cost
        self.beta, self.gamma = learning_rate, momentum
        self.rng = rng
        self.spread = buyer_value - seller_cost
        if self.spread < 0:
            raise InputError(f"agents: buyers' valuation ({buyer_value}) is below sellers' cost "
                             f"({seller_cost}); no local trade can benefit both")
        self.buy_margin = rng.uniform(0, initial_margin, n)  # bid = value - margin x spread
        self.sell_margin = rng.uniform(0, initial_margin, n)  # ask = cost + margin x spread
        self.buy_step = np.zeros(n)
        self.sell_step = np.zeros(n)

    def bid(self) -> np.ndarray:
        return self.buyer_value - self.buy_margin * self.spread

    def ask(self) -> np.ndarray:
        return self.seller_cost + self.sell_margin * self.spread

    def learn(self, buying: np.ndarray, selling: np.ndarray, filled: np.ndarray,
              price: float) -> None:
        """Update margins after one market (one interval).

        Parameters
        ----------
        buying, selling : ndarray of bool, shape (N,)
            Who had a bid / an ask in this market.
        filled : ndarray of bool, shape (N,)
            Whose order was (fully) filled.
        price : float
            Clearing (or last trade) price; NaN if nothing traded.
        """
        n = len(buying)
        up = self.rng.uniform(1.0, 1.05, n)
        down = self.rng.uniform(0.95, 1.0, n)
        bid, ask = self.bid(), self.ask()
        if np.isnan(price):
            # No trade: buyers bid higher, sellers ask lower (towards a deal).
            bid_target = np.where(buying, bid * up, bid)
            ask_target = np.where(selling, ask * down, ask)
        else:
            # Filled traders try for more profit; unfilled ones move beyond the price to trade.
            bid_target = np.where(buying & filled, price * down, np.where(buying, price * up, bid))
            ask_target = np.where(selling & filled, price * up, np.where(selling, price * down, ask))
        self.buy_step = self.gamma * self.buy_step + (1 - self.gamma) * self.beta * (bid_target - bid)
        self.sell_step = self.gamma * self.sell_step + (1 - self.gamma) * self.beta * (
            ask_target - ask)
        new_bid = np.where(buying, bid + self.buy_step, bid)
        new_ask = np.where(selling, ask + self.sell_step, ask)
        spread = max(self.spread, 1e-12)
        self.buy_margin = np.clip((self.buyer_value - new_bid) / spread, 0.0, 1.0)
        self.sell_margin = np.clip((new_ask - self.seller_cost) / spread, 0.0, 1.0)
