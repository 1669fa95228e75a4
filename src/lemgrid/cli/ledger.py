"""``lemgrid ledger ...``: the verifiable ledger's commands (issue 5)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from lemgrid.cli._app import app, console, err_console, user_errors
from lemgrid.errors import InputError
from lemgrid.ledger.db import BUSY_TIMEOUT_S

ledger_app = typer.Typer(help="Verifiable, tamper-evident ledger: keys, signed records, proofs, "
                              "verification, chain anchoring.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

#: Exit code of a verification that ran and failed (bad input exits with 2).
EXIT_VERIFY_FAILED = 1


def _wait_option():
    return typer.Option(BUSY_TIMEOUT_S, "--wait", min=0.0,
                        help="Seconds to wait while another process writes to the ledger, before "
                             "giving up with 'busy'.")


def _operator_key(ledger: Path, key_file: Optional[Path], required: bool = True):
    from lemgrid.ledger.identity import Keystore, load_private_key
    from lemgrid.ledger.integration import default_keystore_path

    if key_file is not None:
        return load_private_key(key_file)
    keystore = default_keystore_path(ledger)
    if keystore.exists():
        return Keystore.load(keystore).operator
    if required:
        raise InputError(f"--operator-key: no key given and no keystore {keystore} next to the "
                         "ledger")
    return None


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path}: not valid JSON ({exc})") from None


def _emit(doc: dict, out: Optional[Path]) -> None:
    text = json.dumps(doc, indent=1, sort_keys=True)
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        out.write_text(text + "\n")
        console.print(f"wrote {out}")


@ledger_app.command()
@user_errors
def keygen(out: Path = typer.Argument(..., help="Private key file to write (PEM, mode 0600)."),
           ) -> None:
    """Generate an Ed25519 key pair; prints its key id and public key."""
    from lemgrid.ledger.identity import generate_key, key_id, public_bytes, write_private_key

    key = generate_key()
    write_private_key(key, out)
    console.print(f"key id     {key_id(key)}\npublic key {public_bytes(key).hex()}\n"
                  f"private key written to {out}", highlight=False, soft_wrap=True)


@ledger_app.command()
@user_errors
def init(path: Path = typer.Argument(..., help="Ledger file to create."),
         operator_key: Optional[Path] = typer.Option(
             None, help="Operator (log) private key, PEM; default: a new key kept in the "
                        "keystore PATH.keys.json.")) -> None:
    """Create an empty ledger whose first entry is the signed log-init record."""
    from lemgrid.ledger.identity import Keystore, generate_key, load_private_key
    from lemgrid.ledger.integration import default_keystore_path
    from lemgrid.ledger.store import Ledger

    keystore = None
    if operator_key is not None:
        key = load_private_key(operator_key)
    else:
        if path.exists() or path.is_symlink():
            raise InputError(f"ledger {path} already exists")
        keystore = default_keystore_path(path)
        if keystore.exists():
            raise InputError(f"keystore {keystore} already exists (the keys of an earlier "
                             "ledger?); refusing to overwrite it: move it away")
        key = generate_key()
        Keystore(operator=key).save(keystore)
    try:
        ledger = Ledger.create(path, key)
    except BaseException:
        if keystore is not None:
            keystore.unlink(missing_ok=True)  # the key of a ledger that was never created
        raise
    with ledger:
        console.print(f"created {path}: log id {ledger.log_id}, operator key "
                      f"{ledger.operator_public_key_hex}", highlight=False, soft_wrap=True)


@ledger_app.command()
@user_errors
def register(path: Path = typer.Argument(..., help="Ledger file."),
             participant: str = typer.Argument(..., help="Participant id."),
             meter: str = typer.Option(..., help="Metering point (bus or meter id) the "
                                                 "participant is bound to."),
             key: Path = typer.Option(..., help="The participant's private key (PEM): its "
                                                "public half is registered and it signs the "
                                                "proof of possession."),
             operator_key: Optional[Path] = typer.Option(
                 None, help="Operator key (PEM); default: the keystore next to the ledger."),
             wait: float = _wait_option()) -> None:
    """Register a participant's key, bound to its metering point (signed by the operator)."""
    from lemgrid.ledger.identity import key_id, load_private_key, registration_payload
    from lemgrid.ledger.store import Ledger

    participant_key = load_private_key(key)
    with Ledger.open(path, _operator_key(path, operator_key), busy_timeout_s=wait) as ledger:
        result = ledger.append_operator([registration_payload(participant_key, participant,
                                                              meter, ledger.log_id)])
    console.print(f"registered key {key_id(participant_key)} of {participant!r} at meter "
                  f"{meter!r} as entry {result.first_seq}", highlight=False, soft_wrap=True)


def _log_id(source: str) -> str:
    from lemgrid.ledger.store import log_id_of

    text = source.strip()
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text
    if Path(source).is_file():
        return log_id_of(Path(source))
    raise InputError(f"--log: {source!r} is neither a log id (64 lowercase hex digits) nor a "
                     "ledger file")


@ledger_app.command()
@user_errors
def sign(payload_file: Path = typer.Argument(..., help="JSON file with one payload object."),
         key: Path = typer.Option(..., help="Signer's private key (PEM)."),
         log: Optional[str] = typer.Option(
             None, help="The log the record is for: its id (64 hex digits, printed by `init` "
                        "and `show`) or the ledger file. Written into the payload as log_id; "
                        "participant records (order, commit, reveal, key-revocation) need it."),
         ) -> None:
    """Sign a record payload (integer units only); prints the signed record as one JSON line."""
    from lemgrid.ledger.identity import load_private_key, sign_record
    from lemgrid.ledger.records import PARTICIPANT_KINDS, payload_bytes, validate_payload

    payload = _read_json(payload_file, "payload file")
    kind = payload.get("kind") if type(payload) is dict else None
    names_log = type(kind) is str and kind in PARTICIPANT_KINDS
    if log is not None:
        log_id = _log_id(log)
        if not names_log:
            kinds = ", ".join(sorted(PARTICIPANT_KINDS))
            raise InputError(f"--log: only participant records ({kinds}) name their log")
        if payload.setdefault("log_id", log_id) != log_id:
            raise InputError(f"{payload_file}.log_id: the payload names log "
                             f"{payload['log_id']!r}, --log names {log_id}")
    elif names_log and "log_id" not in payload:
        raise InputError(f"{payload_file}.log_id: missing; pass --log LEDGER (or its log id) "
                         "to name the log the record is for")
    validate_payload(payload, str(payload_file))
    payload_bytes(payload, str(payload_file))
    record = sign_record(load_private_key(key), payload)
    sys.stdout.write(json.dumps(record.to_json(), sort_keys=True) + "\n")


@ledger_app.command()
@user_errors
def append(path: Path = typer.Argument(..., help="Ledger file."),
           records_file: Path = typer.Argument(..., help="Signed records, one JSON per line."),
           operator_key: Optional[Path] = typer.Option(
               None, help="Operator key (PEM); default: the keystore next to the ledger, if "
                          "any."),
           wait: float = _wait_option()) -> None:
    """Verify and append signed records, all or nothing."""
    from lemgrid.ledger.records import SignedRecord
    from lemgrid.ledger.store import Ledger

    if not records_file.is_file():
        raise InputError(f"records file {records_file} does not exist")
    try:
        text = records_file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"records file {records_file}: not UTF-8 text") from None
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise InputError(f"{records_file} line {n}: not valid JSON") from None
        records.append(SignedRecord.from_json(obj, f"{records_file} line {n}"))
    with Ledger.open(path, _operator_key(path, operator_key, required=False),
                     busy_timeout_s=wait) as ledger:
        result = ledger.append(records)
    console.print(f"appended {result.size - result.first_seq} entries ({result.first_seq}.."
                  f"{result.size - 1}); root {result.root_hex}", highlight=False, soft_wrap=True)
    for reason in result.rejected:
        err_console.print(f"rejected and recorded: {reason}", highlight=False, soft_wrap=True)


@ledger_app.command()
@user_errors
def checkpoint(path: Path = typer.Argument(..., help="Ledger file."),
               label: Optional[str] = typer.Option(None, help="E.g. the gate closure it marks."),
               operator_key: Optional[Path] = typer.Option(
                   None, help="Operator key (PEM); default: the keystore next to the ledger."),
               wait: float = _wait_option()) -> None:
    """Append a signed checkpoint (tree size, root, time) and publish it to the witness file."""
    from lemgrid.ledger.store import Ledger

    with Ledger.open(path, _operator_key(path, operator_key), busy_timeout_s=wait) as ledger:
        entry = ledger.checkpoint(label=label)
        witness = ledger.witness_path
    p = entry["payload"]
    console.print(f"checkpoint at entry {entry['seq']}: {p['tree_size']} entries, root "
                  f"{p['root_hash']}; published to {witness}", highlight=False, soft_wrap=True)


@ledger_app.command()
@user_errors
def show(path: Path = typer.Argument(..., help="Ledger file."),
         kind: Optional[str] = typer.Option(None, help="Only entries of this kind."),
         last: int = typer.Option(20, help="Show the last N entries (0: none).")) -> None:
    """Summarise a ledger and list its last entries."""
    from collections import Counter

    from rich.table import Table

    from lemgrid.ledger.store import Ledger

    with Ledger.open(path) as ledger:
        counts = Counter(e["payload"]["kind"] for e in ledger.entries())
        console.print(f"{path}: {ledger.size} entries, log id {ledger.log_id}\nroot "
                      f"{ledger.root().hex()}\noperator key {ledger.operator_public_key_hex}",
                      highlight=False, soft_wrap=True)
        console.print(", ".join(f"{k}: {n}" for k, n in sorted(counts.items())),
                      highlight=False, soft_wrap=True)
        entries = list(ledger.entries(kind))[-last:] if last > 0 else []
    if entries:
        table = Table("seq", "kind", "signer", "payload")
        for e in entries:
            payload = {k: v for k, v in e["payload"].items() if k != "kind"}
            table.add_row(str(e["seq"]), e["payload"]["kind"], e["signer"][:12],
                          json.dumps(payload, sort_keys=True)[:100])
        console.print(table)


@ledger_app.command()
@user_errors
def verify(path: str = typer.Argument(..., help="Ledger file, or the database URL of a market "
                                                 "server (sqlite:///FILE, postgresql://...)."),
           witness: Optional[Path] = typer.Option(
               None, help="Published checkpoints (JSON lines); default PATH.witness.jsonl if it "
                          "exists."),
           log_key: Optional[str] = typer.Option(
               None, help="Expected operator public key: 64 hex digits or a key file."),
           rpc: Optional[str] = typer.Option(
               None, help="JSON-RPC URL of the chain holding the anchor contract; checks the "
                          "anchored roots too."),
           contract: Optional[str] = typer.Option(
               None, help="Anchor contract address (default: from PATH.anchor.json)."),
           ) -> None:
    """Recompute signatures, hashes, tree, checkpoints and rules; exit 0 only if all hold.

    Exits 1 naming the first bad entry when the ledger fails verification, 2 on bad input.
    """
    from lemgrid.ledger.identity import load_public_key
    from lemgrid.ledger.verify import verify_ledger

    if witness is not None and not witness.is_file():
        raise InputError(f"witness file {witness} does not exist")
    key = load_public_key(log_key) if log_key is not None else None
    anchors = _chain_anchors(Path(path), rpc, contract) if rpc is not None else []
    report = verify_ledger(path, witness=witness if witness is not None else True, log_key=key,
                           anchors=anchors)
    if not report.ok:
        err_console.print(f"[bold red]FAILED[/]: {report.problem}", highlight=False, soft_wrap=True)
        if report.bad_entry is not None:
            err_console.print(f"first bad entry: {report.bad_entry}", highlight=False,
                              soft_wrap=True)
        raise typer.Exit(EXIT_VERIFY_FAILED)
    console.print(f"[bold green]OK[/]: {report.entries} entries, {report.checkpoints} "
                  f"checkpoints, root {report.root_hex}; {report.witnessed} published "
                  f"checkpoints and {report.anchored} chain anchors match", highlight=False,
                  soft_wrap=True)


def _chain_anchors(path: Path, rpc: str, contract: Optional[str]):
    from lemgrid.ledger import chain
    from lemgrid.ledger.store import log_id_of

    record = chain.load_anchor_record(path)
    address = contract or (record or {}).get("contract")
    if address is None:
        raise InputError("--contract: no anchor contract given and no "
                         f"{chain.anchor_record_path(path)}")
    w3 = chain.connect(rpc)
    return chain.read_anchors(chain.at(w3, "anchor", address), log_id_of(path))


@ledger_app.command()
@user_errors
def proof(path: Path = typer.Argument(..., help="Ledger file."),
          entry: int = typer.Argument(..., help="Position of the entry to prove."),
          checkpoint: Optional[int] = typer.Option(
              None, help="Position of the checkpoint entry to prove against (default: the "
                         "latest that covers ENTRY)."),
          out: Optional[Path] = typer.Option(None, help="Write the proof here (default: stdout)."),
          ) -> None:
    """Print an inclusion proof of ENTRY against a signed checkpoint that covers it."""
    from lemgrid.ledger.store import Ledger

    with Ledger.open(path) as ledger:
        doc = ledger.inclusion_proof(entry, checkpoint)
    _emit(doc, out)


@ledger_app.command()
@user_errors
def consistency(path: Path = typer.Argument(..., help="Ledger file."),
                first: int = typer.Argument(..., help="Position of the older checkpoint entry."),
                second: int = typer.Argument(..., help="Position of the newer checkpoint entry."),
                out: Optional[Path] = typer.Option(None, help="Write here (default: stdout)."),
                ) -> None:
    """Print a consistency proof between two checkpoints (the newer log extends the older)."""
    from lemgrid.ledger.store import Ledger

    with Ledger.open(path) as ledger:
        doc = ledger.consistency_proof(first, second)
    _emit(doc, out)


@ledger_app.command("check-proof")
@user_errors
def check_proof(proof_file: Path = typer.Argument(..., help="Proof JSON from `proof` or "
                                                            "`consistency`."),
                log_key: Optional[str] = typer.Option(
                    None, help="Operator public key to trust: 64 hex digits or a key file."),
                checkpoint: Optional[Path] = typer.Option(
                    None, help="A checkpoint entry (JSON) obtained independently, e.g. a line "
                               "of the witness file."),
                ) -> None:
    """Verify a proof against its signed checkpoint alone (no ledger needed); exit 1 if invalid."""
    from lemgrid.ledger.identity import load_public_key
    from lemgrid.ledger.proofs import check_proof as check

    doc = _read_json(proof_file, "proof file")
    key = load_public_key(log_key) if log_key is not None else None
    given = _read_json(checkpoint, "checkpoint file") if checkpoint is not None else None
    result = check(doc, key, given)
    if not result.ok:
        err_console.print(f"[bold red]INVALID[/]: {result.message}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(EXIT_VERIFY_FAILED)
    console.print(f"[bold green]VALID[/]: {result.message}", highlight=False, soft_wrap=True)


@ledger_app.command()
@user_errors
def anchor(path: Path = typer.Argument(..., help="Ledger file."),
           rpc: Optional[str] = typer.Option(
               None, help="JSON-RPC URL of an EVM node (default: an in-process EVM that lives "
                          "only for this command)."),
           contract: Optional[str] = typer.Option(
               None, help="Existing anchor contract (default: PATH.anchor.json, else deploy)."),
           ) -> None:
    """Anchor the ledger's checkpoints on an EVM chain and check the anchored roots against it."""
    from lemgrid.ledger import chain
    from lemgrid.ledger.store import Ledger
    from lemgrid.ledger.verify import verify_ledger

    w3 = chain.connect(rpc)
    record = chain.load_anchor_record(path) if rpc is not None else None
    address = contract or (record["contract"] if record and record["chain_id"] == w3.eth.chain_id
                           else None)
    with Ledger.open(path) as ledger:
        if not ledger.state.checkpoints:
            raise InputError(f"ledger {path} has no checkpoint to anchor; run "
                             "`lemgrid ledger checkpoint` first")
        target = chain.at(w3, "anchor", address) if address else chain.deploy(w3, "anchor")
        done = chain.anchor_ledger(ledger, target)
        log_id = ledger.log_id
    if rpc is not None:
        chain.save_anchor_record(path, w3.eth.chain_id, target.address)
    for a in done:
        console.print(f"anchored checkpoint at entry {a.checkpoint_seq} ({a.tree_size} entries, "
                      f"root {a.root_hex}) as #{a.sequence} in block {a.block_number}",
                      highlight=False, soft_wrap=True)
    report = verify_ledger(path, anchors=chain.read_anchors(target, log_id))
    where = "in-process EVM (discarded on exit)" if rpc is None else rpc
    if not report.ok:
        err_console.print(f"[bold red]FAILED[/]: {report.problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_VERIFY_FAILED)
    console.print(f"[bold green]OK[/]: {report.anchored} anchors in contract {target.address} on "
                  f"{where} match the ledger", highlight=False, soft_wrap=True)
