"""Audit: the append-only, hash-chained trail of every state change (DESIGN.md §5; Properties 66-70).

- ``chain``: canonical JSON, hashes and verification (pure);
- ``redact``: no raw phone number in an entry;
- ``record``: append entries in the caller's transaction (and the row builders the batch
  settlement shares);
- ``transition``: ``apply_transition``, the compare-and-set of a status and its audit entry;
- ``export``: verify the chain in the database, export it as JSONL.

Callers use the names re-exported here: ``from core.services import audit``;
``audit.record(...)``.
"""

from core.services.audit.chain import (
    GENESIS_HASH,
    ChainRecord,
    ChainVerifier,
    VerifyResult,
    canonical_json,
    compute_hash,
    entry_payload,
    format_at,
    format_verify_result,
    make_record,
    verify_jsonl,
    verify_records,
)
from core.services.audit.export import BATCH_SIZE, AsyncTextWriter, Source, export_jsonl, verify_chain
from core.services.audit.record import (
    AUDIT_LOCK_KEY,
    Draft,
    chain_rows,
    chain_tail,
    draft,
    lock_chain,
    record,
    record_admin_access,
    record_draft,
    record_payment_initiated,
    record_payment_transition,
    record_transition,
    transition_details,
    transition_draft,
)
from core.services.audit.redact import canonical_json_default, redact_phones, sanitize_details
from core.services.audit.transition import Applied, Machine, apply_transition

__all__ = [
    "AUDIT_LOCK_KEY", "Applied", "AsyncTextWriter", "BATCH_SIZE", "ChainRecord", "ChainVerifier",
    "Draft", "GENESIS_HASH", "Machine", "Source", "VerifyResult", "apply_transition",
    "canonical_json", "canonical_json_default", "chain_rows", "chain_tail", "compute_hash", "draft",
    "entry_payload", "export_jsonl", "format_at", "format_verify_result", "lock_chain",
    "make_record", "record", "record_admin_access", "record_draft", "record_payment_initiated",
    "record_payment_transition", "record_transition", "redact_phones", "sanitize_details",
    "transition_details", "transition_draft", "verify_chain", "verify_jsonl", "verify_records",
]
