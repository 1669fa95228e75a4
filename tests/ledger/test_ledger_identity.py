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
