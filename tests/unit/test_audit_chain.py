"""Hash chain format, verification and phone hygiene of the audit trail, without a database."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.services.audit import (
    GENESIS_HASH,
    ChainRecord,
    VerifyResult,
    canonical_json,
    format_at,
    format_verify_result,
    make_record,
    redact_phones,
    sanitize_details,
    verify_jsonl,
    verify_records,
)

T0 = datetime(2024, 3, 12, 7, 15, 42, 123456, tzinfo=UTC)


def build_chain(specs: list[dict[str, Any]]) -> list[ChainRecord]:
    """Chain records from seq 1 for the given field values."""
    chain: list[ChainRecord] = []
    prev = GENESIS_HASH
    for index, spec in enumerate(specs, start=1):
        rec = make_record(prev, seq=index, **spec)
        chain.append(rec)
        prev = rec.hash
    return chain


def simple_specs(n: int) -> list[dict[str, Any]]:
    return [
        {
            "at": T0 + timedelta(seconds=i),
            "actor": "system",
            "action": "payment.status_changed",
            "subject_type": "payment",
            "subject_id": str(i),
            "details": {"previous": "AWAITING_CUSTOMER", "new": "PAID", "reason": f"callback {i}"},
        }
        for i in range(n)
    ]


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
def test_hash_is_sha256_of_prev_hash_and_canonical_json() -> None:
    rec = make_record(
        GENESIS_HASH,
        seq=1,
        at=T0,
        actor="admin:7",
        action="admin.accessed",
        subject_type="admin_view",
        subject_id="payments",
        details={"what": "payments", "b": 1, "a": "Nairobi ✓"},
    )
    expected_json = (
        '{"action":"admin.accessed","actor":"admin:7","at":"2024-03-12T07:15:42.123456+00:00",'
        '"details":{"a":"Nairobi ✓","b":1,"what":"payments"},"seq":1,'
        '"subject_id":"payments","subject_type":"admin_view"}'
    )
    assert canonical_json(rec.payload()) == expected_json
    assert rec.hash == hashlib.sha256((GENESIS_HASH + expected_json).encode()).hexdigest()
    assert rec.prev_hash == "0" * 64


def test_at_is_utc_with_microseconds() -> None:
    nairobi = T0.astimezone(ZoneInfo("Africa/Nairobi"))
    assert format_at(nairobi) == "2024-03-12T07:15:42.123456+00:00"
    assert format_at(T0.replace(microsecond=0)) == "2024-03-12T07:15:42.000000+00:00"
    with pytest.raises(ValueError):
        format_at(datetime(2024, 1, 1))  # noqa: DTZ001 - naive on purpose


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
def test_chain_verifies_and_names_first_broken_entry() -> None:
    chain = build_chain(simple_specs(30))
    assert verify_records(chain) == VerifyResult(True, 30, None, None, chain[-1].hash)

    edited = list(chain)
    edited[11] = replace(chain[11], details={**chain[11].details, "new": "FAILED"})
    result = verify_records(edited)
    assert (result.ok, result.first_broken_seq) == (False, 12)
    assert "hash mismatch" in (result.reason or "")

    deleted = chain[:4] + chain[5:]
    result = verify_records(deleted)
    assert (result.ok, result.first_broken_seq) == (False, 5)
    assert "missing" in (result.reason or "")

    swapped = list(chain)
    swapped[6], swapped[7] = chain[7], chain[6]
    assert verify_records(swapped).first_broken_seq == 7

    relinked = list(chain)  # an attacker who edits and re-hashes one entry breaks the next link
    relinked[3] = make_record(chain[3].prev_hash, **{**_fields(chain[3]), "actor": "admin:1"})
    result = verify_records(relinked)
    assert result.first_broken_seq == 5
    assert result.reason == "prev_hash does not match the previous entry's hash"


def test_empty_chain_is_ok() -> None:
    assert verify_records([]) == VerifyResult(True, 0)
    assert format_verify_result(VerifyResult(True, 0)) == ("OK 0 entries", 0)


def test_format_verify_result() -> None:
    assert format_verify_result(VerifyResult(True, 12, last_hash="ab")) == ("OK 12 entries", 0)
    assert format_verify_result(VerifyResult(False, 4, 4, "hash mismatch (entry content was changed)")) == (
        "BROKEN at seq 4: hash mismatch (entry content was changed)",
        1,
    )


def _fields(rec: ChainRecord) -> dict[str, Any]:
    return {
        "seq": rec.seq,
        "at": rec.at,
        "actor": rec.actor,
        "action": rec.action,
        "subject_type": rec.subject_type,
        "subject_id": rec.subject_id,
        "details": rec.details,
    }


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), _text)
_details = st.dictionaries(
    _text, st.recursive(_json_leaf, lambda kids: st.lists(kids, max_size=3), max_leaves=5), max_size=4
)
_spec = st.fixed_dictionaries(
    {
        "at": st.datetimes(
            min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
        ),
        "actor": st.sampled_from(["system", "client:1", "therapist:22", "admin:3"]),
        "action": st.sampled_from(["payment.initiated", "payment.status_changed", "admin.accessed"]),
        "subject_type": st.one_of(st.none(), st.sampled_from(["payment", "booking"])),
        "subject_id": st.one_of(st.none(), st.integers(1, 10**6).map(str)),
        "details": _details,
    }
)
_FIELDS = ["seq", "at", "actor", "action", "subject_type", "subject_id", "details", "prev_hash", "hash"]


def _tamper(rec: ChainRecord, field: str, salt: int) -> ChainRecord:
    value = getattr(rec, field)
    if field == "seq":
        new: Any = value + 1 + salt
    elif field == "at":
        new = value + timedelta(microseconds=1 + salt)
    elif field in ("prev_hash", "hash"):
        new = hashlib.sha256(f"{value}{salt}".encode()).hexdigest()
    elif field == "details":
        new = {**value, f"\x00tampered{salt}": salt}  # NUL never occurs in generated keys
    else:
        new = f"{value or ''}x"
    return replace(rec, **{field: new})


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(_spec, min_size=1, max_size=15),
    data=st.data(),
)
def test_any_chain_verifies_and_any_single_field_tamper_is_detected(
    specs: list[dict[str, Any]], data: st.DataObject
) -> None:
    chain = build_chain(specs)
    assert verify_records(chain).ok
    assert verify_records(chain).count == len(chain)
    index = data.draw(st.integers(0, len(chain) - 1), label="index")
    field = data.draw(st.sampled_from(_FIELDS), label="field")
    salt = data.draw(st.integers(0, 5), label="salt")
    tampered = list(chain)
    tampered[index] = _tamper(chain[index], field, salt)
    result = verify_records(tampered)
    assert not result.ok
    assert result.first_broken_seq == index + 1
    # the exported form verifies the same way
    lines = [canonical_json(rec.to_export()) for rec in chain]
    assert verify_jsonl(lines).ok


def test_jsonl_export_form_verifies_and_slices_anchor_on_first_line() -> None:
    chain = build_chain(simple_specs(10))
    lines = [canonical_json(rec.to_export()) for rec in chain]
    assert verify_jsonl(lines) == VerifyResult(True, 10, None, None, chain[-1].hash)
    assert verify_jsonl(lines[3:7]).ok
    assert verify_jsonl(lines[:3] + lines[4:]).first_broken_seq == 4
    obj = json.loads(lines[2])
    obj["details"]["reason"] = "edited"
    broken = verify_jsonl(lines[:2] + [json.dumps(obj)] + lines[3:])
    assert (broken.ok, broken.first_broken_seq) == (False, 3)
    assert not verify_jsonl(lines[:2] + ["{not json"]).ok


# Feature: mpesa-payment-integration, Property 67: Payment Initiation Records Required Fields
def test_phone_fields_are_masked_anywhere_in_details() -> None:
    details = sanitize_details(
        {
            "phone": "254712345678",
            "msisdn": 254712345678,
            "nested": {"phone_number": "0712345678", "paid_phone": "254112345678"},
            "list": [{"PhoneNumber": "254712345678"}],
            "already": {"phone": "********5678"},
            "none": {"phone": None},
        }
    )
    assert details == {
        "phone": "********5678",
        "msisdn": "********5678",
        "nested": {"phone_number": "******5678", "paid_phone": "********5678"},
        "list": [{"PhoneNumber": "********5678"}],
        "already": {"phone": "********5678"},
        "none": {"phone": None},
    }
    assert "254712345678" not in canonical_json(details)


@pytest.mark.parametrize(
    "details",
    [
        {"note": "paid from 254712345678"},
        {"note": "+254 712 345 678"},
        {"deep": [{"x": "254-712-345-678"}]},
        {"count": 254712345678},
        {"254712345678": "as a key"},
    ],
)
def test_raw_phone_outside_phone_fields_is_rejected(details: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="raw phone"):
        sanitize_details(details)


def test_details_are_json_normalised() -> None:
    out = sanitize_details({"when": T0, "tags": ("a", "b"), "amount_kes": 2500, "receipt": "QKJ4ABC123X"})
    assert out == {
        "when": "2024-03-12T07:15:42.123456+00:00",
        "tags": ["a", "b"],
        "amount_kes": 2500,
        "receipt": "QKJ4ABC123X",
    }
    with pytest.raises(ValueError):
        sanitize_details({"x": float("nan")})
    with pytest.raises(TypeError):
        sanitize_details({"x": object()})


def test_redact_phones() -> None:
    assert redact_phones("search 254712345678 and +254 112 345 678") == "search ********5678 and ********5678"
    assert redact_phones("receipt QKJ4ABC123, amount 2500") == "receipt QKJ4ABC123, amount 2500"
