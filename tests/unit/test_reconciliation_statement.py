"""Parsing the M-Pesa organisation portal's statement CSV."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.services.reconciliation.statement_csv import MAX_STATEMENT_BYTES, StatementError, parse_statement

# Shaped like a real org-portal export: preamble, blank line, header, payments with their
# charge rows (same receipt), a failed transaction and a trailing note.
REALISTIC = """Account Holder:,SMILING STEPS LTD
Short Code:,4123456
Time Period:,From 01-03-2024 00:00:00 To 31-03-2024 23:59:59
Operator:,admin@smilingsteps
Report Date:,01-04-2024 08:00:12

Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,Withdrawn,Balance,\
Balance Confirmed,Reason Type,Other Party Info,Linked Transaction ID,A/C No.
SCC1ABCD01,2024-03-12 10:15:42,2024-03-12 10:15:30,Pay Bill Online from 254712345678 - JOHN DOE Acc. \
SmilingSteps,Completed,"2,500.00",,"12,500.00",true,Pay Bill Online,254712345678 - JOHN DOE,,SmilingSteps
SCC1ABCD01,2024-03-12 10:15:42,2024-03-12 10:15:42,Pay Bill Charge,Completed,,25.00,"12,475.00",true,\
Pay Bill Charge,,,
SCC2EFGH02,12-03-2024 11:00:05,12-03-2024 10:59:50,Pay Bill Online,Failed,"4,000.00",,"12,475.00",true,\
Pay Bill Online,2547******78 - JANE,,SmilingSteps
SCD3IJKL03,2024-03-20 18:30:00,2024-03-20 18:29:41,"Pay Bill Online, evening",Completed,"4,000.00",,\
"16,475.00",true,Pay Bill Online,,,SmilingSteps

Disclaimer: this statement is computer generated,,,,,,,,,,,,
"""


# Feature: mpesa-payment-integration, Property 57: Reconciliation Compares Transactions
def test_realistic_export_with_preamble() -> None:
    statement = parse_statement(REALISTIC.encode())
    assert statement.header_line == 7
    assert statement.short_code == "4123456"
    # 01-03-2024 00:00 Nairobi is 29 Feb 21:00 UTC; the end second is inclusive
    assert statement.period_start == datetime(2024, 2, 29, 21, 0, tzinfo=UTC)
    assert statement.period_end == datetime(2024, 3, 31, 21, 0, tzinfo=UTC)
    rows = statement.rows
    assert [r.receipt for r in rows] == ["SCC1ABCD01", "SCC1ABCD01", "SCC2EFGH02", "SCD3IJKL03"]
    assert [r.line for r in rows] == [8, 9, 10, 11]
    assert [r.paid_in for r in rows] == [Decimal("2500.00"), 0, Decimal("4000.00"), Decimal("4000.00")]
    assert rows[1].withdrawn == Decimal("25.00")
    assert rows[0].completion_time == datetime(2024, 3, 12, 7, 15, 42, tzinfo=UTC)
    assert rows[2].completion_time == datetime(2024, 3, 12, 8, 0, 5, tzinfo=UTC)  # day-first format
    assert [r.completed for r in rows] == [True, True, False, True]
    assert "254712345678" not in rows[0].details  # payer numbers never kept raw
    assert rows[0].reason_type == "Pay Bill Online"


@pytest.mark.parametrize(
    "header",
    [
        "RECEIPT NO,COMPLETION TIME,TRANSACTION STATUS,PAID IN,WITHDRAWN",
        " receipt no. ,Completion Time:,Transaction Status ,Paid In.,Withdrawn.",
        "Receipt Number,Completion Date,Status,Paid In (KES),Withdrawn (KES)",
        "Receipt_No,completion time,transaction status,paid in,withdrawn",
    ],
)
def test_odd_header_spellings(header: str) -> None:
    data = f'{header}\nSCC1ABCD01,2024-03-12 10:15:42,Completed,"2,500.00",\n'.encode()
    [row] = parse_statement(data).rows
    assert (row.receipt, row.paid_in, row.status) == ("SCC1ABCD01", Decimal("2500.00"), "Completed")


def test_semicolon_bom_and_no_preamble_period_from_rows() -> None:
    text = (
        "Receipt No.;Completion Time;Paid In;Withdrawn\n"
        "SCC1ABCD01;12/03/2024 10:15;2500;\n"
        "SCC1ABCD02;2024-03-13 09:00:00;1000.50;\n"
    )
    statement = parse_statement(codecs.BOM_UTF8 + text.encode())
    assert [r.paid_in for r in statement.rows] == [Decimal(2500), Decimal("1000.50")]
    assert all(r.completed for r in statement.rows)  # no status column: the export lists completed only
    assert statement.period_start == datetime(2024, 3, 12, 7, 15, tzinfo=UTC)
    assert statement.period_end == datetime(2024, 3, 13, 6, 0, 1, tzinfo=UTC)


def test_utf16_export() -> None:
    text = 'Receipt No.,Completion Time,Paid In\r\nSCC1ABCD01,2024-03-12 10:15:42,"2,500.00"\r\n'
    [row] = parse_statement(text.encode("utf-16")).rows
    assert row.paid_in == 2500


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2,500.00", "2500.00"),
        ("2500", "2500"),
        ("", "0"),
        ("-", "0"),
        ("KES 1,000.50", "1000.50"),
        ("(25.00)", "-25.00"),
    ],
)
def test_amount_spellings(raw: str, expected: str) -> None:
    data = f'Receipt No.,Paid In\nSCC1ABCD01,"{raw}"\n'.encode()
    assert parse_statement(data).rows[0].paid_in == Decimal(expected)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Date,Amount\n2024-03-01,100\n", "no header row with a 'Receipt No.' column"),
        (
            b"Receipt No.,Completion Time\nSCC1ABCD01,2024-03-12 10:15:42\n",
            "line 1: the header has no 'Paid In'",
        ),
        (
            b"Receipt No.,Paid In\nSCC1ABCD01,100\nSCC1ABCD02,12O0.00\n",
            "line 3: '12O0.00' in column 'Paid In'",
        ),
        (
            b"Receipt No.,Paid In,Completion Time\nSCC1ABCD01,100,yesterday\n",
            "line 2: 'yesterday' is not a date",
        ),
        (b"Receipt No.,Paid In,Completion Time\nSCC1ABCD01,100,31-02-2024 10:00:00\n", "line 2: '31-02-2024"),
        (
            b"Receipt No.,Paid In,Details\nSCC1ABCD01,100,Pay, Bill,x\n",
            "line 2: 5 fields but the header has 3",
        ),
        (b"Receipt No.,Paid In\nnot-a-receipt!,100\n", "line 2: receipt 'NOT-A-RECEIPT!'"),
        (b"Receipt No.,Paid In\n\x00\x01\x02\x89PNG\x00\n", "line 2: binary data"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        (b"", "the file is empty"),
        (b"   \n\n", "the file is empty"),
        (b'Receipt No.,Paid In\n"SCC1ABCD01,100\n', "not valid CSV"),
    ],
)
def test_bad_files_raise_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(StatementError) as caught:
        parse_statement(data)
    assert message in str(caught.value)


def test_error_names_the_line() -> None:
    data = REALISTIC.replace('"4,000.00",,"12,475.00"', '"4,000.0O",,"12,475.00"').encode()
    with pytest.raises(StatementError) as caught:
        parse_statement(data)
    assert caught.value.line == 10
    assert str(caught.value).startswith("statement line 10: '4,000.0O' in column 'Paid In'")


def test_oversized_file_is_refused_before_parsing() -> None:
    data = b"Receipt No.,Paid In\n" + b"SCC1ABCD01,100\n" * (MAX_STATEMENT_BYTES // 15 + 1)
    with pytest.raises(StatementError, match="larger than 10 MB"):
        parse_statement(data)


def test_notes_and_blank_lines_between_rows_are_skipped() -> None:
    data = (
        b"Receipt No.,Completion Time,Paid In\n\nSCC1ABCD01,2024-03-12 10:15:42,100\n,,\nEnd of statement,,\n"
    )
    assert [r.receipt for r in parse_statement(data).rows] == ["SCC1ABCD01"]


def test_time_period_in_a_single_cell_with_dates_only() -> None:
    data = b"Time Period: 2024-03-01 - 2024-03-31\nReceipt No.,Paid In\nSCC1ABCD01,100\n"
    statement = parse_statement(data)
    assert statement.period_start == datetime(2024, 2, 29, 21, 0, tzinfo=UTC)
    assert statement.period_end == datetime(2024, 3, 31, 21, 0, tzinfo=UTC)
