"""The audit chain as plain data (pure, no I/O): canonical JSON, hashing, verification.

Every entry stores ``hash = SHA-256(prev_hash ‖ canonical JSON of its fields)``, so editing,
deleting or reordering any entry breaks the chain from that point on. The database path
(``export``) and the JSONL path (``verify_jsonl``) verify with the same ``ChainVerifier``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


# -- canonical form and hashing (pure) ----------------------------------------------------


def canonical_json(value: Any) -> str:
    """The one JSON spelling that is hashed: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_at(at: datetime) -> str:
    """ISO-8601 in UTC with microseconds, e.g. ``2024-03-12T07:15:42.000000+00:00``."""
    if at.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class ChainRecord:
    """One audit entry as plain data: what is hashed plus its two hashes."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject_type: str | None
    subject_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def payload(self) -> dict[str, Any]:
        """The hashed fields, exactly as ``compute_hash`` sees them."""
        return entry_payload(
            seq=self.seq,
            at=self.at,
            actor=self.actor,
            action=self.action,
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            details=self.details,
        )

    def to_export(self) -> dict[str, Any]:
        """The JSON object written per line by ``export_jsonl``."""
        return {
            "seq": self.seq,
            "at": format_at(self.at),
            "actor": self.actor,
            "action": self.action,
            "subject": {"type": self.subject_type, "id": self.subject_id},
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def entry_payload(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject_type: str | None,
    subject_id: str | None,
    details: Mapping[str, Any],
) -> dict[str, Any]:
    """The dictionary whose canonical JSON is hashed."""
    return {
        "seq": seq,
        "at": format_at(at),
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "details": dict(details),
    }


def compute_hash(prev_hash: str, payload: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``prev_hash`` followed by the canonical JSON of ``payload``."""
    return hashlib.sha256((prev_hash + canonical_json(payload)).encode("utf-8")).hexdigest()


def make_record(
    prev_hash: str,
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject_type: str | None = None,
    subject_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> ChainRecord:
    """Build the next chain record after ``prev_hash`` (no I/O; ``record`` uses this)."""
    clean = dict(details or {})
    payload = entry_payload(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=clean,
    )
    return ChainRecord(
        seq=seq,
        at=at.astimezone(UTC),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=clean,
        prev_hash=prev_hash,
        hash=compute_hash(prev_hash, payload),
    )


# -- verification (pure core, shared by the DB and the JSONL paths) -----------------------


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain check; ``first_broken_seq`` names the first entry that fails."""

    ok: bool
    count: int
    first_broken_seq: int | None = None
    reason: str | None = None
    last_hash: str | None = None


class ChainVerifier:
    """Feed records in seq order; remembers the first break (seq gap, bad link or bad hash)."""

    def __init__(self, *, expected_seq: int = 1, prev_hash: str = GENESIS_HASH) -> None:
        self.expected_seq = expected_seq
        self.prev_hash = prev_hash
        self.count = 0
        self.broken_seq: int | None = None
        self.reason: str | None = None

    @property
    def broken(self) -> bool:
        return self.broken_seq is not None

    def feed(self, rec: ChainRecord) -> bool:
        """Check one record; returns False once the chain is broken (stop feeding then)."""
        if self.broken:
            return False
        self.count += 1
        if rec.seq != self.expected_seq:
            want = self.expected_seq
            if rec.seq > want:
                gap = f"{want}" if rec.seq - 1 == want else f"{want}-{rec.seq - 1}"
                return self._fail(want, f"entry missing (seq {gap} absent, next is seq {rec.seq})")
            return self._fail(want, f"out of order (found seq {rec.seq})")
        if rec.prev_hash != self.prev_hash:
            return self._fail(rec.seq, "prev_hash does not match the previous entry's hash")
        try:
            recomputed = compute_hash(rec.prev_hash, rec.payload())
        except (TypeError, ValueError):
            return self._fail(rec.seq, "entry content is not canonical JSON")
        if recomputed != rec.hash:
            return self._fail(rec.seq, "hash mismatch (entry content was changed)")
        self.prev_hash = rec.hash
        self.expected_seq += 1
        return True

    def result(self) -> VerifyResult:
        if self.broken:
            return VerifyResult(False, self.count, self.broken_seq, self.reason, None)
        return VerifyResult(True, self.count, None, None, self.prev_hash if self.count else None)

    def _fail(self, seq: int, reason: str) -> bool:
        self.broken_seq, self.reason = seq, reason
        return False


def verify_records(records: Iterable[ChainRecord]) -> VerifyResult:
    """Verify an in-memory chain that starts at seq 1."""
    verifier = ChainVerifier()
    for rec in records:
        if not verifier.feed(rec):
            break
    return verifier.result()


def verify_jsonl(lines: Iterable[str]) -> VerifyResult:
    """Verify an ``export_jsonl`` file; a slice (since/until) is anchored on its first entry."""
    verifier: ChainVerifier | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = _record_from_export(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            seq = verifier.expected_seq if verifier else 0
            return VerifyResult(False, verifier.count if verifier else 0, seq, f"line {number}: {exc}")
        if verifier is None:
            verifier = ChainVerifier(expected_seq=rec.seq, prev_hash=rec.prev_hash)
        if not verifier.feed(rec):
            break
    return verifier.result() if verifier else VerifyResult(True, 0)


def format_verify_result(result: VerifyResult) -> tuple[str, int]:
    """The CLI line and exit code: ``OK <count> entries`` / ``BROKEN at seq N: reason``."""
    if result.ok:
        return f"OK {result.count} entries", 0
    return f"BROKEN at seq {result.first_broken_seq}: {result.reason}", 1


def _record_from_export(obj: Mapping[str, Any]) -> ChainRecord:
    subject = obj["subject"] or {}
    return ChainRecord(
        seq=int(obj["seq"]),
        at=datetime.fromisoformat(obj["at"]),
        actor=obj["actor"],
        action=obj["action"],
        subject_type=subject.get("type"),
        subject_id=subject.get("id"),
        details=obj["details"],
        prev_hash=obj["prev_hash"],
        hash=obj["hash"],
    )
