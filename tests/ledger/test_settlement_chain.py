"""Settlement on chain: balances root posted, each participant claims its own balance with an
inclusion proof, once; tokens minted for credits and rewards, debts recorded."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("web3")
pytest.importorskip("vyper")
pytest.importorskip("eth_tester")

from lemgrid.errors import InputError  # noqa: E402
from lemgrid.ledger import chain  # noqa: E402
from lemgrid.ledger.settlement_chain import (  # noqa: E402
    BalanceTree,
    balance_leaf,
    balances_from_statements,
    claim,
    deploy_settlement,
    peak_generation_rewards,
    post_session,
)

SESSION = hashlib.sha256(b"community/2016-06-06").digest()
LEDGER_ROOT = hashlib.sha256(b"checkpoint root").digest()
# total_ueur: positive = pays. Five participants: an odd level in the tree.
STATEMENTS = [{"participant": "alice", "total_ueur": -1_250_000},
              {"participant": "bob", "total_ueur": 830_000},
              {"participant": "carol", "total_ueur": -40},
              {"participant": "dave", "total_ueur": 0},
              {"participant": "erin", "total_ueur": 2_000_000}]
REWARDS = {"bob": 5_000, "dave": 700}


@pytest.fixture(scope="module")
def w3():
    return chain.connect()


@pytest.fixture
def posted(w3):
    accounts = dict(zip([s["participant"] for s in STATEMENTS], w3.eth.accounts[1:6]))
    tree = BalanceTree(SESSION, balances_from_statements(STATEMENTS, accounts, REWARDS))
    contract = deploy_settlement(w3)
    post_session(contract, tree, LEDGER_ROOT)
    return contract, tree, accounts


def test_leaf_hash_is_the_contracts(w3, posted):
    contract, tree, accounts = posted
    b = tree.balance("bob")
    assert contract.functions.leaf(SESSION, b.account, b.net_ueur, b.reward).call() == \
        balance_leaf(SESSION, b.account, b.net_ueur, b.reward)
    assert contract.functions.balances_root(SESSION).call() == tree.root
    assert contract.functions.ledger_root(SESSION).call() == LEDGER_ROOT


def test_every_participant_claims_its_balance_once(w3, posted):
    contract, tree, accounts = posted
    for s in STATEMENTS:
        b = tree.balance(s["participant"])
        assert contract.functions.verify(SESSION, b.account, b.net_ueur, b.reward,
                                         tree.proof(b.participant)).call()
        claim(contract, tree, s["participant"])
    balance = {p: contract.functions.balanceOf(a).call() for p, a in accounts.items()}
    debt = {p: contract.functions.debt(a).call() for p, a in accounts.items()}
    assert balance == {"alice": 1_250_000, "bob": 5_000, "carol": 40, "dave": 700, "erin": 0}
    assert debt == {"alice": 0, "bob": 830_000, "carol": 0, "dave": 0, "erin": 2_000_000}
    assert contract.functions.totalSupply().call() == sum(balance.values())
    with pytest.raises(Exception, match="already claimed"):
        claim(contract, tree, "alice")
    # Debt is paid by burning tokens.
    contract.functions.pay_debt(5_000).transact({"from": accounts["bob"]})
    assert contract.functions.debt(accounts["bob"]).call() == 825_000
    assert contract.functions.balanceOf(accounts["bob"]).call() == 0


def test_a_false_balance_or_someone_elses_claim_is_refused(w3, posted):
    contract, tree, accounts = posted
    b = tree.balance("alice")
    proof = tree.proof("alice")
    with pytest.raises(Exception, match="not in the session's root"):
        contract.functions.claim(SESSION, b.net_ueur + 1, b.reward, proof).transact(
            {"from": b.account})
    with pytest.raises(Exception, match="not in the session's root"):  # bob with alice's leaf
        contract.functions.claim(SESSION, b.net_ueur, b.reward, proof).transact(
            {"from": accounts["bob"]})
    with pytest.raises(Exception, match="only the operator"):
        contract.functions.post_session(SESSION, tree.root, LEDGER_ROOT).transact(
            {"from": accounts["bob"]})
    with pytest.raises(Exception, match="already posted"):
        post_session(contract, tree, LEDGER_ROOT)
    assert not contract.functions.verify(hashlib.sha256(b"other").digest(), b.account,
                                         b.net_ueur, b.reward, proof).call()


def test_bad_input_is_named():
    with pytest.raises(InputError, match="no chain address"):
        balances_from_statements(STATEMENTS, {"alice": "0x" + "11" * 20})
    with pytest.raises(InputError, match="at least one"):
        BalanceTree(SESSION, [])


class _Result:
    """The two fields peak_generation_rewards reads."""

    dt_h = 0.25
    participant_ids = np.array(["a", "b", "c"])
    # kW, export positive: intervals 1 and 2 are the export peak (c exports 8 and 9 kW).
    metered_kw = np.array([[-1.0, -1.0, 1.0], [-2.0, 0.5, 8.0], [-4.0, -1.0, 9.0],
                           [-1.0, -3.0, 0.0]])


def test_peak_generation_rewards_by_hand():
    rewards = peak_generation_rewards(_Result(), 0, 4, tokens_per_kwh=10_000, peak_share=0.8)
    # Export per interval: 1, 8.5, 9, 0 kW -> peak (>= 7.2 kW) at intervals 1 and 2.
    # a imports (2 + 4) kW x 0.25 h = 1.5 kWh; b imports 1 kW x 0.25 h = 0.25 kWh.
    assert rewards == {"a": 15_000, "b": 2_500, "c": 0}
    with pytest.raises(InputError, match="peak_share"):
        peak_generation_rewards(_Result(), 0, 4, peak_share=0)
