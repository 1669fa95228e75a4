# pragma version ~=0.4.0
"""
@title Commit-reveal sealed bids, on chain
@notice The on-chain alternative to lemgrid's ledger commit-reveal (lemgrid.ledger.sealed), used
        by benchmarks/chain_cost.py: a bidder first posts keccak256(order, salt, bidder); after
        the commit phase it reveals order and salt, and the contract keeps the revealed order
        (encoded as in uniform_auction.vy) for the clearing. A commitment opens once.
"""

event Committed:
    session: indexed(bytes32)
    commitment: indexed(bytes32)
    bidder: address

event Revealed:
    session: indexed(bytes32)
    bidder: indexed(address)
    order: uint256

owner: public(address)
# session -> commitment -> the bidder who posted it
committed_by: public(HashMap[bytes32, HashMap[bytes32, address]])
# session -> true once the operator closed the commit phase
gate_closed: public(HashMap[bytes32, bool])
revealed_count: public(HashMap[bytes32, uint256])
revealed: public(HashMap[bytes32, HashMap[uint256, uint256]])


@deploy
def __init__():
    self.owner = msg.sender


@external
@pure
def commitment_of(order: uint256, salt: bytes32, bidder: address) -> bytes32:
    """@notice The commitment a bidder posts for an order and a secret salt."""
    return keccak256(abi_encode(order, salt, bidder))


@external
def commit(session: bytes32, commitment: bytes32):
    assert not self.gate_closed[session], "gate is closed"
    assert self.committed_by[session][commitment] == empty(address), "commitment already posted"
    self.committed_by[session][commitment] = msg.sender
    log Committed(session=session, commitment=commitment, bidder=msg.sender)


@external
def close_gate(session: bytes32):
    assert msg.sender == self.owner, "only the operator closes the gate"
    self.gate_closed[session] = True


@external
def reveal(session: bytes32, order: uint256, salt: bytes32):
    assert self.gate_closed[session], "gate is not closed yet"
    commitment: bytes32 = keccak256(abi_encode(order, salt, msg.sender))
    assert self.committed_by[session][commitment] == msg.sender, "reveal opens no commitment"
    self.committed_by[session][commitment] = empty(address)
    count: uint256 = self.revealed_count[session]
    self.revealed[session][count] = order
    self.revealed_count[session] = count + 1
    log Revealed(session=session, bidder=msg.sender, order=order)
