"""ICT layer: identities, signed records, an append-only Merkle log with proofs, sealed bids.

The ledger knows nothing of markets beyond the records it is handed (see ``docs/ledger.md``):

- :mod:`~lemgrid.ledger.identity` Ed25519 keys, key ids, signatures, key files;
- :mod:`~lemgrid.ledger.canonical` and :mod:`~lemgrid.ledger.units` canonical JSON (RFC 8785) and
  integer units (Wh, m€/kWh, µ€);
- :mod:`~lemgrid.ledger.records` record kinds and schemas;
- :mod:`~lemgrid.ledger.merkle` RFC 9162 tree hashing and proofs;
- :mod:`~lemgrid.ledger.rules`, :mod:`~lemgrid.ledger.spending`, :mod:`~lemgrid.ledger.sealed` the
  rules every entry obeys;
- :mod:`~lemgrid.ledger.store` the SQLite log, :mod:`~lemgrid.ledger.verify` the verifier,
  :mod:`~lemgrid.ledger.proofs` proof checking without the database;
- :mod:`~lemgrid.ledger.integration` recording a market clearing;
- :mod:`~lemgrid.ledger.chain` anchoring checkpoints on an EVM chain (extra ``[chain]``).
"""
