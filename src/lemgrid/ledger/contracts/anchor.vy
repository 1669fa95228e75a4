# pragma version ~=0.4.0
"""
@title Checkpoint anchor for lemgrid ledgers
@notice Keeps the Merkle roots of a ledger's signed checkpoints, append-only per log: each new
        anchor must cover a larger tree than the one before, so an anchored root can never be
        replaced and a log cut short after an anchored checkpoint is detected.
"""

event Anchored:
    log_id: indexed(bytes32)
    sequence: indexed(uint256)
    tree_size: uint256
    root: bytes32
    checkpoint_hash: bytes32

struct Checkpoint:
    tree_size: uint256
    root: bytes32
    checkpoint_hash: bytes32
    block_number: uint256

owner: public(address)
count: public(HashMap[bytes32, uint256])
checkpoints: public(HashMap[bytes32, HashMap[uint256, Checkpoint]])


@deploy
def __init__():
    self.owner = msg.sender


@external
def anchor(log_id: bytes32, tree_size: uint256, root: bytes32, checkpoint_hash: bytes32) -> uint256:
    """
    @notice Anchor one checkpoint: the tree size and root it signs, and its leaf hash in the log.
    @return The checkpoint's sequence number for this log.
    """
    assert msg.sender == self.owner, "only the operator anchors"
    sequence: uint256 = self.count[log_id]
    if sequence > 0:
        assert tree_size > self.checkpoints[log_id][sequence - 1].tree_size, "tree must grow"
    self.checkpoints[log_id][sequence] = Checkpoint(
        tree_size=tree_size, root=root, checkpoint_hash=checkpoint_hash, block_number=block.number
    )
    self.count[log_id] = sequence + 1
    log Anchored(
        log_id=log_id, sequence=sequence, tree_size=tree_size, root=root,
        checkpoint_hash=checkpoint_hash
    )
    return sequence
