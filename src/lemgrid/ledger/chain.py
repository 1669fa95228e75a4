"""Anchor ledger checkpoints on an EVM chain (extra ``[chain]``: vyper, web3, eth-tester).

The Vyper contract ``contracts/anchor.vy`` keeps, per log id, the sequence of anchored checkpoints
(tree size, root, the checkpoint entry's leaf hash) and emits an ``Anchored`` event for each; it
refuses an anchor that does not grow the tree. Contracts are compiled from source with the
``vyper`` package at run time. By default the chain is an in-process EVM (eth-tester with py-evm),
which lives only as long as the Python process; pass a JSON-RPC URL to use a real node, whose
first account (unlocked by the node) sends the transactions.

References
----------
.. [1] Vyper 0.4 documentation, https://docs.vyperlang.org
.. [2] web3.py 7 documentation, https://web3py.readthedocs.io
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lemgrid.errors import InputError
from lemgrid.ledger.store import Ledger
from lemgrid.ledger.verify import Anchor

_INSTALL_HINT = "install the chain extra: pip install 'lemgrid[chain]'"


@dataclass(frozen=True)
class CompiledContract:
    """ABI and deployment bytecode of a contract."""

    abi: list
    bytecode: str


#: Contracts shipped in ``contracts/``.
CONTRACTS = ("anchor", "order_log", "sealed_bids", "uniform_auction", "settlement")


def contract_source(name: str) -> str:
    """Vyper source of a contract shipped with lemgrid (one of :data:`CONTRACTS`)."""
    if name not in CONTRACTS:
        raise InputError(f"contract must be one of {', '.join(CONTRACTS)}, got {name!r}")
    return resources.files("lemgrid.ledger").joinpath("contracts", f"{name}.vy").read_text()


@functools.cache
def compile_contract(name: str, constants: tuple[tuple[str, int], ...] = ()) -> CompiledContract:
    """Compile a shipped contract with the installed ``vyper`` (cached per process).

    Parameters
    ----------
    name : str
        One of :data:`CONTRACTS`.
    constants : tuple of (name, value)
        Integer constants of the source to set before compiling (e.g. ``(("MAX_ORDERS",
        1024),)``: a contract's array bounds decide how much memory, hence gas, a call takes).
    """
    try:
        import vyper
    except ImportError:
        raise InputError(f"compiling contracts needs vyper; {_INSTALL_HINT}") from None
    source = contract_source(name)
    for constant, value in constants:
        pattern = re.compile(rf"^{constant}: constant\(uint256\) = .*$", re.MULTILINE)
        source, found = pattern.subn(f"{constant}: constant(uint256) = {int(value)}", source)
        if found != 1:
            raise InputError(f"contract {name} has no constant {constant}")
    out = vyper.compile_code(source, output_formats=["abi", "bytecode"])
    return CompiledContract(out["abi"], out["bytecode"])


def connect(rpc_url: str | None = None, *, gas_limit: int | None = None) -> Any:
    """A ``web3.Web3`` on a JSON-RPC node, or on a fresh in-process EVM when ``rpc_url`` is None.

    Parameters
    ----------
    rpc_url : str, optional
        JSON-RPC URL of a node; None for an in-process EVM (eth-tester with py-evm).
    gas_limit : int, optional
        Block gas limit of the in-process EVM (eth-tester's default otherwise).
    """
    try:
        from web3 import EthereumTesterProvider, HTTPProvider, Web3
    except ImportError:
        raise InputError(f"chain anchoring needs web3 and eth-tester; {_INSTALL_HINT}") from None
    if rpc_url is None:
        if gas_limit is None:
            return Web3(EthereumTesterProvider())
        from eth_tester import EthereumTester, PyEVMBackend

        params = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": int(gas_limit)})
        return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend(
            genesis_parameters=params))))
    if gas_limit is not None:
        raise InputError("gas_limit applies to the in-process EVM only, not to a node at a URL")
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    if not w3.is_connected():
        raise InputError(f"--rpc: cannot reach a JSON-RPC node at {rpc_url}")
    return w3


def _sender(w3: Any) -> str:
    accounts = w3.eth.accounts
    if not accounts:
        raise InputError("the node offers no unlocked account to send transactions from")
    return accounts[0]


def deploy(w3: Any, name: str, *args: Any,
           constants: tuple[tuple[str, int], ...] = ()) -> Any:
    """Deploy a shipped contract (constructor arguments ``args``; ``constants`` as in
    :func:`compile_contract`); returns the web3 contract object."""
    compiled = compile_contract(name, constants)
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    tx = factory.constructor(*args).transact({"from": _sender(w3)})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    if receipt.status != 1:
        raise InputError(f"deploying contract {name} failed on chain")
    return w3.eth.contract(address=receipt.contractAddress, abi=compiled.abi)


def at(w3: Any, name: str, address: str) -> Any:
    """A shipped contract already deployed at ``address``."""
    try:
        address = w3.to_checksum_address(address)
    except ValueError:
        raise InputError(f"contract address {address!r} is not an address") from None
    if not w3.eth.get_code(address):
        raise InputError(f"no contract at {address} on this chain")
    return w3.eth.contract(address=address, abi=compile_contract(name).abi)


@dataclass(frozen=True)
class AnchoredCheckpoint:
    """One checkpoint anchored by :func:`anchor_ledger`."""

    sequence: int
    checkpoint_seq: int
    tree_size: int
    root_hex: str
    tx_hash: str
    block_number: int


def read_anchors(contract: Any, log_id: str) -> list[Anchor]:
    """All checkpoints anchored for a log, in order, as :class:`~lemgrid.ledger.verify.Anchor`."""
    log = bytes.fromhex(log_id)
    anchors = []
    for sequence in range(contract.functions.count(log).call()):
        tree_size, root, checkpoint_hash, block = contract.functions.checkpoints(log,
                                                                                 sequence).call()
        anchors.append(Anchor(tree_size, bytes(root).hex(), bytes(checkpoint_hash).hex(),
                              f"chain anchor #{sequence} (block {block})"))
    return anchors


def anchor_ledger(ledger: Ledger, contract: Any) -> list[AnchoredCheckpoint]:
    """Anchor every checkpoint of the ledger that the contract does not hold yet.

    Parameters
    ----------
    ledger : Ledger
        An open ledger.
    contract : web3 contract
        The anchor contract (see :func:`deploy` / :func:`at`).

    Returns
    -------
    list of AnchoredCheckpoint
        The checkpoints anchored now (empty if all were already anchored).
    """
    w3 = contract.w3
    log = bytes.fromhex(ledger.log_id)
    existing = read_anchors(contract, ledger.log_id)
    last_size = existing[-1].tree_size if existing else 0
    leaves = ledger.leaf_hashes()
    sender = _sender(w3)
    done = []
    for checkpoint in ledger.state.checkpoints:
        if checkpoint.tree_size <= last_size:
            continue
        tx = contract.functions.anchor(log, checkpoint.tree_size, checkpoint.root,
                                       leaves[checkpoint.seq]).transact({"from": sender})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        if receipt.status != 1:
            raise InputError(f"anchoring checkpoint at entry {checkpoint.seq} failed on chain")
        event = contract.events.Anchored().process_receipt(receipt)[0]["args"]
        done.append(AnchoredCheckpoint(event["sequence"], checkpoint.seq, checkpoint.tree_size,
                                       checkpoint.root.hex(), receipt.transactionHash.hex(),
                                       receipt.blockNumber))
    return done


def anchor_record_path(ledger_path: str | Path) -> Path:
    """Where the contract address used for a ledger is remembered: ``<ledger>.anchor.json``."""
    path = Path(ledger_path)
    return path.with_name(path.name + ".anchor.json")


def save_anchor_record(ledger_path: str | Path, chain_id: int, address: str) -> None:
    """Remember the anchor contract of a ledger on a real chain."""
    anchor_record_path(ledger_path).write_text(json.dumps({"chain_id": chain_id,
                                                           "contract": address}) + "\n")


def load_anchor_record(ledger_path: str | Path) -> dict | None:
    """The remembered anchor contract, if any."""
    path = anchor_record_path(ledger_path)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        return {"chain_id": int(record["chain_id"]), "contract": str(record["contract"])}
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not an anchor record (JSON with chain_id and contract)") \
            from None
