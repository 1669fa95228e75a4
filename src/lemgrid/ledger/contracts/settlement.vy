# pragma version ~=0.4.0
"""
@title Community settlement on chain: statement roots, net balances, claims, a community token
@notice For each session the operator posts the Merkle root of the participants' net balances
        (leaf = keccak256(abi_encode(session, account, net, reward)); net in micro-euro, positive
        = the community owes the account; reward = incentive tokens) beside the ledger
        checkpoint root the statements are in. A participant claims its leaf with an inclusion
        proof (sorted-pair keccak256 tree): a positive net and the reward are minted to it in
        the community token (1 token unit = 1 micro-euro), a negative net is recorded as its
        debt, which it pays by burning tokens. Anyone can check a leaf against the root.
"""

MAX_DEPTH: constant(uint256) = 32

event SessionPosted:
    session: indexed(bytes32)
    balances_root: bytes32
    ledger_root: bytes32

event Claimed:
    session: indexed(bytes32)
    account: indexed(address)
    net: int256
    reward: uint256

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
owner: public(address)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
debt: public(HashMap[address, uint256])
balances_root: public(HashMap[bytes32, bytes32])
ledger_root: public(HashMap[bytes32, bytes32])
claimed: public(HashMap[bytes32, HashMap[address, bool]])


@deploy
def __init__(token_name: String[32], token_symbol: String[8]):
    self.owner = msg.sender
    self.name = token_name
    self.symbol = token_symbol
    self.decimals = 6


@external
def post_session(session: bytes32, balances_root: bytes32, ledger_root: bytes32):
    """@notice Post a session's balances root (once) and the ledger checkpoint root."""
    assert msg.sender == self.owner, "only the operator posts sessions"
    assert balances_root != empty(bytes32), "empty root"
    assert self.balances_root[session] == empty(bytes32), "session already posted"
    self.balances_root[session] = balances_root
    self.ledger_root[session] = ledger_root
    log SessionPosted(session=session, balances_root=balances_root, ledger_root=ledger_root)


@external
@pure
def leaf(session: bytes32, account: address, net: int256, reward: uint256) -> bytes32:
    return keccak256(abi_encode(session, account, net, reward))


@internal
@view
def _verify(session: bytes32, account: address, net: int256, reward: uint256,
            proof: DynArray[bytes32, MAX_DEPTH]) -> bool:
    root: bytes32 = self.balances_root[session]
    if root == empty(bytes32):
        return False
    node: bytes32 = keccak256(abi_encode(session, account, net, reward))
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    return node == root


@external
@view
def verify(session: bytes32, account: address, net: int256, reward: uint256,
           proof: DynArray[bytes32, MAX_DEPTH]) -> bool:
    """@notice True if the balance (net, reward) of account is in the session's posted root."""
    return self._verify(session, account, net, reward, proof)


@external
def claim(session: bytes32, net: int256, reward: uint256, proof: DynArray[bytes32, MAX_DEPTH]):
    """@notice Claim the caller's balance of a session with its inclusion proof, once."""
    assert not self.claimed[session][msg.sender], "already claimed"
    assert self._verify(session, msg.sender, net, reward, proof), "not in the session's root"
    self.claimed[session][msg.sender] = True
    credit: uint256 = reward
    if net > 0:
        credit += convert(net, uint256)
    else:
        self.debt[msg.sender] += convert(-net, uint256)
    if credit > 0:
        self.balanceOf[msg.sender] += credit
        self.totalSupply += credit
        log Transfer(sender=empty(address), receiver=msg.sender, value=credit)
    log Claimed(session=session, account=msg.sender, net=net, reward=reward)


@external
def pay_debt(amount: uint256):
    """@notice Pay debt by burning tokens."""
    assert amount <= self.debt[msg.sender], "more than the debt"
    assert amount <= self.balanceOf[msg.sender], "more than the balance"
    self.debt[msg.sender] -= amount
    self.balanceOf[msg.sender] -= amount
    self.totalSupply -= amount
    log Transfer(sender=msg.sender, receiver=empty(address), value=amount)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    assert amount <= self.balanceOf[msg.sender], "more than the balance"
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=msg.sender, receiver=receiver, value=amount)
    return True
