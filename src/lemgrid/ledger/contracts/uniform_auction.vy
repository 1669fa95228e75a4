# pragma version ~=0.4.0
"""
@title Uniform-price double auction cleared on chain, in integer units
@notice The rules of lemgrid.market.auction.clear_uniform, in integers: the largest
        welfare-maximising volume Q* = max over bid levels b of min(demand >= b, supply <= b);
        levels in merit order filled in full, the marginal level of each side pro rata to the
        orders' quantities (rounded down to whole Wh); the market-clearing price interval [L, U]
        with L = max(marginal ask, highest bid with an unmatched remainder) and
        U = min(marginal bid, lowest ask with an unmatched remainder); lemgrid's default k = 1/2
        prices every trade at (L + U) / 2.
        An order is one uint256: bit 128 = 1 for a buy, bits 64..127 the limit price
        (milli-euro per kWh, >= 0), bits 0..63 the quantity (Wh, > 0).
        The operator may pass the merit order it computed (a permutation of the orders sorting
        their keys); the contract then only checks it, in one pass, instead of sorting.
"""

MAX_ORDERS: constant(uint256) = 8192
# Sift-down steps of a heap of MAX_ORDERS elements (its depth).
HEAP_DEPTH: constant(uint256) = 14
MASK64: constant(uint256) = 2**64 - 1

event Cleared:
    session: indexed(bytes32)
    n_orders: uint256
    volume_wh: uint256
    lower_meur_per_kwh: uint256
    upper_meur_per_kwh: uint256
    fills_wh: DynArray[uint256, MAX_ORDERS]

struct Clearing:
    n_orders: uint256
    volume_wh: uint256
    lower_meur_per_kwh: uint256
    upper_meur_per_kwh: uint256

owner: public(address)
clearings: public(HashMap[bytes32, Clearing])


@deploy
def __init__():
    self.owner = msg.sender


@external
def clear(session: bytes32, orders: DynArray[uint256, MAX_ORDERS],
          merit_order: DynArray[uint256, MAX_ORDERS]) -> (uint256, uint256, uint256):
    """
    @notice Clear a session's book and record the result; each session is cleared once.
    @param orders The book, encoded as above.
    @param merit_order Empty to sort on chain; else the positions of the orders sorted by key
           (side with asks first, price, quantity, position), checked on chain.
    @return Traded volume (Wh) and the price interval [L, U] (milli-euro per kWh; 0, 0 when
            nothing trades). Each order's fill (Wh, in the order of the book) is in the event.
    """
    assert msg.sender == self.owner, "only the operator clears"
    assert self.clearings[session].n_orders == 0, "session already cleared"
    assert len(orders) > 0, "empty book"
    n: uint256 = len(orders)
    # key = side << 192 | price << 128 | quantity << 64 | position
    keys: DynArray[uint256, MAX_ORDERS] = []
    n_ask: uint256 = 0
    if len(merit_order) == 0:
        for i: uint256 in range(n, bound=MAX_ORDERS):
            o: uint256 = orders[i]
            assert o & MASK64 > 0 and o >> 129 == 0, "bad order (quantity 0 or stray bits)"
            n_ask += 1 - (o >> 128)
            keys.append((o << 64) | i)
        # Heapsort, ascending: asks by price, then bids by price.
        half: uint256 = n // 2
        for step: uint256 in range(n + half, bound=MAX_ORDERS + MAX_ORDERS // 2):
            root: uint256 = 0
            end: uint256 = n
            if step < half:
                root = half - 1 - step
            else:
                end = n - 1 - (step - half)
                top: uint256 = keys[0]
                keys[0] = keys[end]
                keys[end] = top
            item: uint256 = keys[root]
            for _d: uint256 in range(HEAP_DEPTH + 1):
                child: uint256 = 2 * root + 1
                if child >= end:
                    break
                child_key: uint256 = keys[child]
                if child + 1 < end:
                    right: uint256 = keys[child + 1]
                    if child_key < right:
                        child += 1
                        child_key = right
                if item >= child_key:
                    break
                keys[root] = child_key
                root = child
            keys[root] = item
    else:
        assert len(merit_order) == n, "merit order must name every order once"
        previous: uint256 = 0
        for j: uint256 in range(n, bound=MAX_ORDERS):
            i: uint256 = merit_order[j]
            o: uint256 = orders[i]
            assert o & MASK64 > 0 and o >> 129 == 0, "bad order (quantity 0 or stray bits)"
            n_ask += 1 - (o >> 128)
            key: uint256 = (o << 64) | i
            # strictly increasing keys: sorted, and no position twice (a permutation)
            assert j == 0 or key > previous, "merit order is not sorted"
            keys.append(key)
            previous = key
    fills: DynArray[uint256, MAX_ORDERS] = []
    for i: uint256 in range(n, bound=MAX_ORDERS):
        fills.append(0)

    n_bid: uint256 = n - n_ask
    # Q*: bid levels from the highest price down; demand at or above, supply at or below.
    supply: uint256 = 0
    for i: uint256 in range(n_ask, bound=MAX_ORDERS):
        supply += (keys[i] >> 64) & MASK64
    q_star: uint256 = 0
    demand: uint256 = 0
    ask_top: uint256 = n_ask  # keys[0:ask_top] are the asks priced at or below the bid level
    for j: uint256 in range(n_bid, bound=MAX_ORDERS):
        key: uint256 = keys[n - 1 - j]
        price: uint256 = (key >> 128) & MASK64
        demand += (key >> 64) & MASK64
        if j + 1 < n_bid and (keys[n - 2 - j] >> 128) & MASK64 == price:
            continue  # not the level's last order yet
        for _k: uint256 in range(n_ask, bound=MAX_ORDERS):
            if ask_top == 0:
                break
            ask: uint256 = keys[ask_top - 1]
            if (ask >> 128) & MASK64 <= price:
                break
            ask_top -= 1
            supply -= (ask >> 64) & MASK64
        q_star = max(q_star, min(demand, supply))

    lower: uint256 = 0        # max(marginal ask, highest bid with a remainder)
    upper: uint256 = 2**64    # min(marginal bid, lowest ask with a remainder)
    if q_star > 0:
        # Fills and the price interval, one side at a time along its merit order.
        for side: uint256 in range(2):
            count: uint256 = n_ask if side == 0 else n_bid
            cum: uint256 = 0
            level_start: uint256 = 0
            first: uint256 = 0  # merit-order rank of the level's first order
            for j: uint256 in range(count, bound=MAX_ORDERS):
                key: uint256 = keys[j] if side == 0 else keys[n - 1 - j]
                price: uint256 = (key >> 128) & MASK64
                cum += (key >> 64) & MASK64
                if j + 1 < count:
                    nxt: uint256 = keys[j + 1] if side == 0 else keys[n - 2 - j]
                    if (nxt >> 128) & MASK64 == price:
                        continue  # not the level's last order yet
                if level_start < q_star:  # the level trades
                    if side == 0:
                        lower = max(lower, price)
                    else:
                        upper = min(upper, price)
                    for m: uint256 in range(first, j + 1, bound=MAX_ORDERS):
                        k: uint256 = keys[m] if side == 0 else keys[n - 1 - m]
                        q: uint256 = (k >> 64) & MASK64
                        if cum > q_star:
                            q = q * (q_star - level_start) // (cum - level_start)
                        fills[k & MASK64] = q
                if cum > q_star:  # the level keeps a remainder
                    if side == 0:
                        upper = min(upper, price)
                    else:
                        lower = max(lower, price)
                    break  # no level beyond trades, and this one set the bound
                level_start = cum
                first = j + 1
    else:
        upper = 0
    self.clearings[session] = Clearing(
        n_orders=n, volume_wh=q_star, lower_meur_per_kwh=lower, upper_meur_per_kwh=upper
    )
    log Cleared(
        session=session, n_orders=n, volume_wh=q_star, lower_meur_per_kwh=lower,
        upper_meur_per_kwh=upper, fills_wh=fills
    )
    return q_star, lower, upper
