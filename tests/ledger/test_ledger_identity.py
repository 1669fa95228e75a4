"""Ed25519 identities: RFC 8032 test vector, key files, keystore, key registration."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lemgrid.errors import InputError
from lemgrid.ledger.identity import (
    SIGNING_CONTEXT,
    Keystore,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    public_bytes,
    public_key_from_hex,
    sign_payload,
    signature_valid,
    signing_message,
    write_private_key,
)

# RFC 8032, section 7.1, TEST 1 (empty message).
RFC8032_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIG = ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
               "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")


def test_rfc8032_vector_signs_with_cryptography_and_verifies_with_libsodium():
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SECRET))
    assert public_bytes(key).hex() == RFC8032_PUBLIC
    assert key.sign(b"").hex() == RFC8032_SIG
    public = public_key_from_hex(RFC8032_PUBLIC)
    assert signature_valid(public, RFC8032_SIG, b"")
    assert not signature_valid(public, RFC8032_SIG, b"x")
    assert not signature_valid(public, RFC8032_SIG[:-2] + "0c", b"")
    assert not signature_valid(public, "zz", b"")


def test_payload_signatures_cover_the_context_and_canonical_bytes():
    key = generate_key()
    payload = {"kind": "order", "b": 1, "a": "x"}
    sig = sign_payload(key, payload)
    message = signing_message(payload)
    assert message == SIGNING_CONTEXT + b'{"a":"x","b":1,"kind":"order"}'
    public = public_key_from_hex(public_bytes(key).hex())
    assert signature_valid(public, sig, message)
    assert not signature_valid(public, sig, signing_message({**payload, "b": 2}))
    assert len(key_id(key)) == 32 and key_id(key) == key_id(public)


def test_key_files_round_trip_and_bad_files_are_named(tmp_path):
    key = generate_key()
    path = tmp_path / "k.pem"
    write_private_key(key, path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert public_bytes(load_private_key(path)) == public_bytes(key)
    assert bytes(load_public_key(path)) == public_bytes(key)
    assert bytes(load_public_key(public_bytes(key).hex())) == public_bytes(key)
    pub_pem = tmp_path / "k.pub"
    pub_pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    assert bytes(load_public_key(pub_pem)) == public_bytes(key)
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_private_key(key, path)

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InputError, match="garbage.pem: not a PEM private key"):
        load_private_key(garbage)
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(InputError, match="not an Ed25519 private key"):
        load_private_key(ec_key)
    with pytest.raises(InputError, match="does not exist"):
        load_private_key(tmp_path / "missing.pem")
    with pytest.raises(InputError, match="64 hex digits"):
        public_key_from_hex("abcd")
    with pytest.raises(InputError, match="neither 64 hex digits nor an existing file"):
        load_public_key("xyz")


def test_keystore_round_trip(tmp_path):
    store = Keystore(operator=generate_key())
    alice, fresh = store.participant_key("alice")
    assert fresh and store.participant_key("alice") == (alice, False)
    path = tmp_path / "keys.json"
    store.save(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    loaded = Keystore.load(path)
    assert public_bytes(loaded.operator) == public_bytes(store.operator)
    assert public_bytes(loaded.participants["alice"]) == public_bytes(alice)
    path.write_text("[]")
    with pytest.raises(InputError, match="not a lemgrid keystore"):
        Keystore.load(path)


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_keystore_save_ignores_planted_files_and_stays_owner_only(tmp_path):
    """The temporary file used to be ``<keystore>.tmp``, opened without O_EXCL / O_NOFOLLOW: a
    symlink planted there received the private keys, a leftover 0666 file made a 0666 keystore."""
    path = tmp_path / "keys.json"
    planted = path.with_name(path.name + ".tmp")
    target = tmp_path / "attacker.txt"
    target.write_text("")
    target.chmod(0o666)
    planted.symlink_to(target)
    Keystore(operator=generate_key()).save(path)
    assert target.read_text() == "" and planted.is_symlink()
    assert _mode(path) == 0o600 and not path.is_symlink()
    planted.unlink()
    planted.write_text("left over")
    planted.chmod(0o666)
    path.chmod(0o644)  # an earlier keystore with wider permissions is replaced
    Keystore(operator=generate_key()).save(path)
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attacker.txt", "keys.json",
                                                         "keys.json.tmp"]


def test_key_files_and_ledgers_are_never_written_through_a_symlink(tmp_path):
    from typer.testing import CliRunner

    from lemgrid.cli import app
    from lemgrid.ledger.store import Ledger

    dangling = tmp_path / "alice.pem"
    dangling.symlink_to(tmp_path / "elsewhere.pem")
    result = CliRunner().invoke(app, ["ledger", "keygen", str(dangling)])
    assert result.exit_code == 2, result.output  # an error, not a traceback (exit code 1)
    assert "error:" in result.output and "a symlink is in the way" in result.output
    assert not (tmp_path / "elsewhere.pem").exists()
    db = tmp_path / "market.db"
    db.symlink_to(tmp_path / "redirected.db")
    with pytest.raises(InputError, match="already exists"):
        Ledger.create(db, generate_key())
    assert not (tmp_path / "redirected.db").exists()


def test_the_ledger_and_its_keystore_are_owner_only(tmp_path):
    import sqlite3

    from typer.testing import CliRunner

    from lemgrid.cli import app

    path = tmp_path / "market.db"
    assert CliRunner().invoke(app, ["ledger", "init", str(path)]).exit_code == 0
    assert _mode(path) == 0o600
    assert _mode(tmp_path / "market.db.keys.json") == 0o600
    reader = sqlite3.connect(path)  # while a connection is open, the WAL files exist
    reader.execute("SELECT COUNT(*) FROM entries").fetchone()
    for name in ("market.db-wal", "market.db-shm"):
        assert _mode(tmp_path / name) == 0o600, name
    reader.close()
    path.unlink()  # the keys of the old ledger are not overwritten by a new init
    again = CliRunner().invoke(app, ["ledger", "init", str(path)])
    assert again.exit_code == 2 and "refusing to overwrite it" in again.output
