"""Ed25519 identities: key pairs, key ids, signatures over canonical payloads, key files.

Every participant holds an Ed25519 key pair (RFC 8032) bound to its metering point by a
key-registration record in the ledger; the market operator holds the log key that signs its own
records and the checkpoints. A signature covers ``SIGNING_CONTEXT + canonical_bytes(payload)``; the
context string keeps a ledger signature from being valid in any other protocol that signs JSON.

Key files are PKCS#8 PEM (private) and SubjectPublicKeyInfo PEM or 64 hex digits (public).
Keys are made and used for signing with ``cryptography`` (OpenSSL); signatures are verified with
PyNaCl (libsodium), whose Ed25519 verification is about twice as fast as OpenSSL's and which
releases the GIL, so a batch verifies on all cores. Both implement RFC 8032 with the same key and
signature encodings; libsodium additionally refuses small-order keys and non-canonical points.

References
----------
.. [1] S. Josefsson, I. Liusvaara, "Edwards-Curve Digital Signature Algorithm (EdDSA)", RFC 8032.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from lemgrid.errors import InputError
from lemgrid.ledger.canonical import canonical_bytes
from lemgrid.ledger.records import SignedRecord

#: Prefix of every signed message (domain separation from other uses of the same key).
SIGNING_CONTEXT = b"lemgrid-ledger/v1\x00"

_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw


#: A public key ready to verify signatures.
PublicKey = VerifyKey


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey | VerifyKey) -> bytes:
    """Raw 32-byte public key of a key pair or public key."""
    if isinstance(key, VerifyKey):
        return bytes(key)
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(_RAW, _RAW_PUB)


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey | VerifyKey | bytes) -> str:
    """Key id: the first 16 bytes of SHA-256 of the raw public key, as 32 hex digits."""
    raw = key if isinstance(key, bytes) else public_bytes(key)
    return hashlib.sha256(raw).hexdigest()[:32]


def public_key_from_hex(text: str, field_name: str = "public_key") -> VerifyKey:
    """Parse a raw Ed25519 public key written as 64 hex digits."""
    try:
        raw = bytes.fromhex(text)
        if len(raw) != 32:
            raise ValueError
        return VerifyKey(raw)
    except (ValueError, TypeError):
        raise InputError(f"{field_name} must be 64 hex digits (a raw Ed25519 public key), "
                         f"got {text!r}") from None


def signing_message(payload: dict, where: str = "payload") -> bytes:
    """The exact bytes an Ed25519 signature over ``payload`` covers.

    Raises
    ------
    CanonicalError
        If the payload is outside the canonical subset; the message starts with ``where``.
    """
    return SIGNING_CONTEXT + canonical_bytes(payload, where)


def sign_payload(private_key: Ed25519PrivateKey, payload: dict) -> str:
    """Sign a payload; returns the 64-byte signature as 128 hex digits."""
    return private_key.sign(signing_message(payload)).hex()


def sign_record(private_key: Ed25519PrivateKey, payload: dict) -> SignedRecord:
    """Sign a payload into a :class:`~lemgrid.ledger.records.SignedRecord`."""
    return SignedRecord(payload, key_id(private_key), sign_payload(private_key, payload))


def signature_valid(public_key: VerifyKey, signature_hex: str, message: bytes) -> bool:
    """True if ``signature_hex`` (128 lowercase hex digits, its one canonical spelling) is a valid
    Ed25519 signature of ``message``."""
    try:
        signature = bytes.fromhex(signature_hex)
        if signature.hex() != signature_hex:  # capitals, spaces: another spelling, refused
            return False
        public_key.verify(message, signature)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


def possession_payload(participant: str, meter: str, public_key_hex: str, log_id: str) -> dict:
    """What a new key signs to prove possession of its private half (inside key-registration).

    The log id is inside, so that a proof published in one log cannot register the key in
    another without its holder.
    """
    return {"kind": "key-possession", "log_id": log_id, "participant": participant,
            "meter": meter, "public_key": public_key_hex}


def registration_payload(participant_key: Ed25519PrivateKey, participant: str,
                         meter: str, log_id: str) -> dict:
    """A key-registration payload binding ``participant_key`` to a participant and its meter.

    The operator signs the record (vouching for the metering point); the new key signs a proof
    of possession inside it, so nobody can register a key whose private half they do not hold.

    Parameters
    ----------
    participant_key : Ed25519PrivateKey
        The participant's new key.
    participant : str
        Participant id.
    meter : str
        Metering point (bus or meter id) the participant is bound to.
    log_id : str
        The log the key is registered in (64 hex digits).
    """
    public_hex = public_bytes(participant_key).hex()
    pop = sign_payload(participant_key, possession_payload(participant, meter, public_hex, log_id))
    return {"kind": "key-registration", "participant": participant, "meter": meter,
            "public_key": public_hex, "pop_sig": pop}


def generate_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 key pair from the operating system's random source."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM of a private key (unencrypted: protect the file with permissions)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _create_exclusive(path: Path, what: str) -> int:
    """Open a new file for writing, mode 0600; never an existing file, never through a symlink."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        kind = "a symlink" if path.is_symlink() else "a file"
        raise InputError(f"{path}: {kind} is in the way; refusing to overwrite it with "
                         f"{what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot create {what} ({exc.strerror})") from None


def write_private_key(key: Ed25519PrivateKey, path: str | Path) -> None:
    """Write a private key as PEM, readable by the owner only (0600); refuses to overwrite any
    file or symlink (dangling ones included)."""
    path = Path(path)
    fd = _create_exclusive(path, "a key file")
    with os.fdopen(fd, "wb") as out:
        out.write(private_key_pem(key))
        out.flush()
        os.fsync(out.fileno())


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PKCS#8 PEM file.

    Raises
    ------
    InputError
        If the file is missing or does not hold an unencrypted Ed25519 private key.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"key file {path} does not exist")
    return _private_key_from_pem(path.read_bytes(), str(path))


def _private_key_from_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InputError(f"{where}: not a PEM private key (unencrypted PKCS#8 Ed25519 "
                         "expected)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{where}: holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public_key(source: str | Path) -> VerifyKey:
    """Read an Ed25519 public key: 64 hex digits, or a file with PEM (public or private) or hex.

    Raises
    ------
    InputError
        If the text or file holds no Ed25519 public key.
    """
    text = str(source).strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return public_key_from_hex(text)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"public key {text!r} is neither 64 hex digits nor an existing file")
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        return VerifyKey(public_bytes(_private_key_from_pem(data, str(path))))
    if b"PUBLIC KEY" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise InputError(f"{path}: not a valid PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InputError(f"{path}: holds a {type(key).__name__}, not an Ed25519 public key")
        return VerifyKey(public_bytes(key))
    return public_key_from_hex(data.decode("ascii", "replace").strip(), str(path))


@dataclass
class Keystore:
    """The operator's log key and participants' private keys, kept in one JSON file.

    Meant for demonstrations and tests (``lemgrid clear --ledger`` without signed orders): real
    participants keep their own keys and send signed records. The file is written with owner-only
    permissions.
    """

    operator: Ed25519PrivateKey
    participants: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    def participant_key(self, participant: str) -> tuple[Ed25519PrivateKey, bool]:
        """The participant's key, generating one if needed; returns (key, newly_generated)."""
        key = self.participants.get(participant)
        if key is not None:
            return key, False
        key = generate_key()
        self.participants[participant] = key
        return key, True

    def save(self, path: str | Path) -> None:
        """Write the keystore atomically with owner-only permissions."""
        path = Path(path)
        doc = {"operator": private_key_pem(self.operator).decode(),
               "participants": {p: private_key_pem(k).decode()
                                for p, k in sorted(self.participants.items())}}
        # A fresh, unpredictable temporary name (mkstemp: O_EXCL, O_NOFOLLOW, mode 0600), so a
        # file or symlink planted next to the keystore can neither receive nor widen the keys.
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise InputError(f"keystore {path}: cannot write next to it ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "w") as out:
                os.fchmod(out.fileno(), 0o600)
                json.dump(doc, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Keystore:
        """Read a keystore written by :meth:`save`."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            operator = doc["operator"]
            participants = doc.get("participants", {})
        except FileNotFoundError:
            raise InputError(f"keystore {path} does not exist") from None
        except OSError as exc:
            raise InputError(f"keystore {path}: cannot read it ({exc.strerror})") from None
        except (ValueError, KeyError, TypeError):
            raise InputError(f"keystore {path}: not a lemgrid keystore (JSON with 'operator' "
                             "and 'participants')") from None
        return cls(operator=_private_key_from_pem(operator.encode(), f"{path}: operator"),
                   participants={p: _private_key_from_pem(pem.encode(), f"{path}: {p}")
                                 for p, pem in participants.items()})
