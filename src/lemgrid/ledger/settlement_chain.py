"""Settlement on chain (optional): net balances in a community token, claimed with proofs.

The operator turns a session's ``statement`` records into net balances (``net = -total_ueur``
µ€: positive when the community owes the participant) plus an optional incentive reward, builds
a Merkle tree over the leaves ``keccak256(abi_encode(session, account, net, reward))`` (pairs
hashed in sorted order, as ``contracts/settlement.vy`` checks them) and posts its root with the
ledger's checkpoint root (:func:`post_session`). Each participant claims its own leaf with an
inclusion proof (:func:`claim`): a positive net and the reward are minted to it in the community
token (1 unit = 1 µ€), a negative net becomes its recorded debt.

Incentive ([147] in the review: tokens rewarding wanted behaviour): :func:`peak_generation_rewards`
rewards the energy a participant imports while the community's export is at its peak of the
session, i.e. consuming at peak local generation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lemgrid.errors import InputError
from lemgrid.ledger import chain

if TYPE_CHECKING:
    from lemgrid.sim.results import SimulationResult


def _keccak(data: bytes) -> bytes:
    from eth_utils import keccak

    return bytes(keccak(data))


def balance_leaf(session: bytes, account: str, net_ueur: int, reward: int) -> bytes:
    """The leaf of one account's balance, as the contract hashes it."""
    from eth_abi import encode

    return _keccak(encode(["bytes32", "address", "int256", "uint256"],
                          [session, account, int(net_ueur), int(reward)]))


@dataclass(frozen=True)
class Balance:
    """One account's balance of a session."""

    participant: str
    account: str
    net_ueur: int
    reward: int


class BalanceTree:
    """Sorted-pair keccak256 Merkle tree over a session's balance leaves.

    A level with an odd number of nodes carries its last node up unchanged.
    """

    def __init__(self, session: bytes, balances: Sequence[Balance]) -> None:
        if len(session) != 32:
            raise InputError(f"session must be 32 bytes, got {len(session)}")
        if not balances:
            raise InputError("balances: a session needs at least one balance")
        accounts = [b.account.lower() for b in balances]
        if len(set(accounts)) != len(accounts):
            raise InputError("balances: an account appears twice")
        self.session = session
        self.balances = list(balances)
        self.levels = [[balance_leaf(session, b.account, b.net_ueur, b.reward)
                        for b in balances]]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            up = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                up.append(level[-1])
            self.levels.append(up)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, participant: str) -> list[bytes]:
        """The siblings from a participant's leaf up to the root."""
        index = next((i for i, b in enumerate(self.balances) if b.participant == participant),
                     None)
        if index is None:
            raise InputError(f"participant: {participant!r} has no balance in this session")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index //= 2
        return path

    def balance(self, participant: str) -> Balance:
        for b in self.balances:
            if b.participant == participant:
                return b
        raise InputError(f"participant: {participant!r} has no balance in this session")


def _pair(a: bytes, b: bytes) -> bytes:
    return _keccak(a + b if a < b else b + a)


def balances_from_statements(statements: Sequence[Mapping], accounts: Mapping[str, str],
                             rewards: Mapping[str, int] | None = None) -> list[Balance]:
    """Net balances of a session from its ``statement`` payloads.

    Parameters
    ----------
    statements : sequence of dict
        The session's statement payloads (``participant``, ``total_ueur``).
    accounts : mapping
        participant -> chain address.
    rewards : mapping, optional
        participant -> incentive tokens (see :func:`peak_generation_rewards`).
    """
    rewards = rewards or {}
    out = []
    for s in statements:
        participant = s["participant"]
        if participant not in accounts:
            raise InputError(f"accounts: no chain address for participant {participant!r}")
        out.append(Balance(participant, accounts[participant], -int(s["total_ueur"]),
                           int(rewards.get(participant, 0))))
    return out


def peak_generation_rewards(result: SimulationResult, start: int, stop: int, *,
                            tokens_per_kwh: int = 10_000, peak_share: float = 0.8
                            ) -> dict[str, int]:
    """Incentive tokens for consuming at peak local generation in intervals [start, stop).

    The peak intervals are those whose community export (sum of the participants' metered
    export) reaches ``peak_share`` of the session's largest; each participant earns
    ``tokens_per_kwh`` per kWh it imports in them (rounded down).
    """
    if not 0 < peak_share <= 1:
        raise InputError(f"peak_share must be in (0, 1], got {peak_share!r}")
    if tokens_per_kwh < 0:
        raise InputError(f"tokens_per_kwh must be >= 0, got {tokens_per_kwh!r}")
    metered = np.asarray(result.metered_kw)[start:stop] * result.dt_h
    export = np.clip(metered, 0, None).sum(axis=1)
    if export.max(initial=0.0) <= 0:
        return {str(p): 0 for p in result.participant_ids}
    peak = export >= peak_share * export.max()
    imported = np.clip(-metered[peak], 0, None).sum(axis=0)
    return {str(p): int(np.floor(imported[i] * tokens_per_kwh))
            for i, p in enumerate(result.participant_ids)}


def deploy_settlement(w3: Any, name: str = "Community kWh", symbol: str = "CKWH") -> Any:
    """Deploy ``contracts/settlement.vy`` (the community token's name and symbol)."""
    return chain.deploy(w3, "settlement", name, symbol)


def post_session(contract: Any, tree: BalanceTree, ledger_root: bytes) -> int:
    """Post a session's balances root and ledger checkpoint root; returns the gas used."""
    w3 = contract.w3
    tx = contract.functions.post_session(tree.session, tree.root, ledger_root).transact(
        {"from": w3.eth.accounts[0]})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1:
        raise InputError("posting the session failed on chain")
    return int(receipt.gasUsed)


def claim(contract: Any, tree: BalanceTree, participant: str) -> int:
    """The participant claims its balance (sent from its own account); returns the gas used."""
    b = tree.balance(participant)
    tx = contract.functions.claim(tree.session, b.net_ueur, b.reward,
                                  tree.proof(participant)).transact({"from": b.account})
    receipt = contract.w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1:
        raise InputError(f"claim of {participant!r} failed on chain")
    return int(receipt.gasUsed)
