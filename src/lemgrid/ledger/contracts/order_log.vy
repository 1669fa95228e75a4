# pragma version ~=0.4.0
"""
@title Orders recorded one transaction each
@notice The on-chain alternative to the Merkle log, used as the peer in benchmarks/ledger.py:
        every order is a transaction, replays are refused, the payload goes into an event.
"""

event OrderRecorded:
    order_hash: indexed(bytes32)
    sender: indexed(address)
    payload: Bytes[1024]

seen: public(HashMap[bytes32, bool])
count: public(uint256)


@external
def record(order_hash: bytes32, payload: Bytes[1024]):
    assert not self.seen[order_hash], "replayed order"
    self.seen[order_hash] = True
    self.count += 1
    log OrderRecorded(order_hash=order_hash, sender=msg.sender, payload=payload)
