"""Parser for the M-Pesa organisation portal's statement export (CSV); pure, no I/O.

Real exports start with a few preamble lines ("Account Holder:", "Short Code:", "Time
Period:" …) before the header row, spell column names loosely, write amounts as
"2,500.00" and times in Africa/Nairobi. Anything we cannot read with certainty raises
``StatementError`` naming the line, so a bad file never half-reconciles.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from core.logging import mask_phones

MAX_STATEMENT_BYTES = 10 * 1024 * 1024
NAIROBI = ZoneInfo("Africa/Nairobi")
COMPLETED = "completed"
_SNIFF_LINES = 200  # the header row is within the first lines of any export

# Canonical column -> accepted spellings after _norm() (lower case, no dots/colons/brackets).
_COLUMNS: dict[str, tuple[str, ...]] = {
    "receipt": ("receipt no", "receipt number", "receipt", "mpesa receipt number", "transaction receipt"),
    "completion_time": ("completion time", "completion date", "completed time", "completion date time"),
    "initiation_time": ("initiation time", "initiation date"),
    "details": ("details", "description"),
    "status": ("transaction status", "status"),
    "paid_in": ("paid in", "paid in kes", "paid in ksh", "amount paid in", "money in", "credit"),
    "withdrawn": ("withdrawn", "withdrawn kes", "withdrawn ksh", "withdrawal", "money out", "debit"),
    "reason_type": ("reason type",),
    "linked_transaction_id": ("linked transaction id",),
    "account": ("a/c no", "account no", "account number", "ac no"),
}
_ALIASES = {alias: column for column, aliases in _COLUMNS.items() for alias in aliases}
_RECEIPT = re.compile(r"^[A-Z0-9]{6,20}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A date (ISO or day-first) with an optional time, as found in cells and "Time Period" lines.
_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})(?:[ T](?P<time>\d{1,2}:\d{2}(?::\d{2})?))?"
)


class StatementError(ValueError):
    """The statement cannot be used; the message names the line (1-based) when there is one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"statement line {line}: {message}" if line else f"statement: {message}")


@dataclass(frozen=True)
class StatementRow:
    """One transaction line of the statement; amounts exact, time in UTC."""

    line: int
    receipt: str
    completion_time: datetime | None
    status: str
    paid_in: Decimal
    withdrawn: Decimal
    details: str = ""
    reason_type: str = ""
    linked_transaction_id: str = ""

    @property
    def completed(self) -> bool:
        return self.status.strip().lower() == COMPLETED


@dataclass(frozen=True)
class Statement:
    """Parsed statement: transaction rows plus the period it covers (end exclusive, UTC)."""

    rows: tuple[StatementRow, ...]
    period_start: datetime | None
    period_end: datetime | None
    header_line: int
    short_code: str | None = None


def parse_statement(data: bytes) -> Statement:
    """Parse an M-Pesa statement export or raise StatementError."""
    table = _read_rows(_decode(data))
    header_index = _find_header(table)
    if header_index is None:
        raise StatementError("no header row with a 'Receipt No.' column found")
    header_line, header = table[header_index]
    columns = _map_columns(header, header_line)
    preamble = _preamble(table[:header_index])

    rows: list[StatementRow] = []
    for line, cells in table[header_index + 1 :]:
        row = _parse_row(line, cells, columns, len(header))
        if row is not None:
            rows.append(row)

    start, end = _period(preamble.get("time period"), header_line)
    if start is None:
        times = [r.completion_time for r in rows if r.completion_time is not None]
        if times:
            start, end = min(times), max(times) + timedelta(seconds=1)
    return Statement(
        rows=tuple(rows),
        period_start=start,
        period_end=end,
        header_line=header_line,
        short_code=(preamble.get("short code") or preamble.get("shortcode") or None),
    )


def parse_amount(raw: str, *, line: int, column: str) -> Decimal:
    """ "2,500.00" -> Decimal("2500.00"); empty or "-" -> 0; anything else raises StatementError."""
    value = raw.strip().replace(",", "").replace(" ", "").replace("\u00a0", "")
    for prefix in ("KES", "KSH", "Ksh", "Kshs", "KSHS"):
        value = value.removeprefix(prefix)
    if value in ("", "-", "--"):
        return Decimal(0)
    negative = value.startswith("(") and value.endswith(")")
    try:
        amount = Decimal(value.strip("()"))
    except InvalidOperation:
        raise StatementError(f"'{raw.strip()[:40]}' in column '{column}' is not an amount", line) from None
    if not amount.is_finite():
        raise StatementError(f"'{raw.strip()[:40]}' in column '{column}' is not an amount", line)
    return -amount if negative else amount


def parse_time(raw: str, *, line: int | None = None, end_of_day: bool = False) -> datetime | None:
    """Africa/Nairobi "2024-03-12 10:15:42" or "12-03-2024 10:15:42" -> aware UTC; empty -> None."""
    value = raw.strip()
    if not value:
        return None
    match = _DATETIME.fullmatch(value)
    if match is None:
        raise StatementError(f"'{value[:40]}' is not a date and time", line)
    parsed = _to_datetime(match, end_of_day=end_of_day)
    if parsed is None:
        raise StatementError(f"'{value[:40]}' is not a valid date", line)
    return parsed


# -- helpers --------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if len(data) > MAX_STATEMENT_BYTES:
        raise StatementError(f"the file is larger than {MAX_STATEMENT_BYTES // (1024 * 1024)} MB")
    if not data.strip():
        raise StatementError("the file is empty")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" save
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise StatementError("not a text CSV file (bad UTF-16)") from None
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1252")  # older Windows exports
            except UnicodeDecodeError:
                raise StatementError("not a text CSV file (binary data)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if _CONTROL.search(line):
            raise StatementError("binary data; not a CSV text file", number)
    return text


def _read_rows(text: str) -> list[tuple[int, list[str]]]:
    """Rows with their starting line numbers, split with whichever delimiter finds the header."""
    head = "\n".join(text.splitlines()[:_SNIFF_LINES])
    best, best_index = ",", None
    for delimiter in (",", ";", "\t"):
        try:
            index = _find_header(_split(head, delimiter))
        except StatementError:
            continue
        if index is not None and (best_index is None or index < best_index):
            best, best_index = delimiter, index
    return _split(text, best)


def _split(text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        line = 1
        for cells in reader:
            rows.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise StatementError(f"not valid CSV ({exc})", reader.line_num) from None
    return rows


def _norm(name: str) -> str:
    name = re.sub(r"[.:()\[\]_]", " ", name.strip().lower())
    return " ".join(name.split())


def _find_header(rows: Sequence[tuple[int, list[str]]]) -> int | None:
    for index, (_line, cells) in enumerate(rows):
        if any(_ALIASES.get(_norm(cell)) == "receipt" for cell in cells):
            return index
    return None


def _map_columns(header: list[str], line: int) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        column = _ALIASES.get(_norm(cell))
        if column is not None and column not in columns:
            columns[column] = index
    if "paid_in" not in columns:
        raise StatementError("the header has no 'Paid In' column", line)
    return columns


def _preamble(rows: Sequence[tuple[int, list[str]]]) -> dict[str, str]:
    """'Time Period:,From … To …' or 'Time Period: From … To …' -> {'time period': '…'}."""
    found: dict[str, str] = {}
    for _line, cells in rows:
        cells = [c.strip() for c in cells if c.strip()]
        if not cells:
            continue
        key, sep, rest = cells[0].partition(":")
        value = " ".join([rest.strip(), *cells[1:]]).strip() if sep else " ".join(cells[1:])
        found.setdefault(_norm(key), value)
    return found


def _period(value: str | None, header_line: int) -> tuple[datetime | None, datetime | None]:
    if not value:
        return None, None
    matches = list(_DATETIME.finditer(value))
    if len(matches) < 2:
        return None, None
    start = _to_datetime(matches[0], end_of_day=False)
    end = _to_datetime(matches[1], end_of_day=True)
    if start is None or end is None or end < start:
        raise StatementError(f"cannot read the time period '{value[:60]}'", None)
    return start, end + timedelta(seconds=1)  # inclusive end second -> exclusive bound


def _to_datetime(match: re.Match[str], *, end_of_day: bool) -> datetime | None:
    date_part, time_part = match.group("date"), match.group("time")
    if "-" in date_part and len(date_part.split("-")[0]) == 4:
        year, month, day = (int(p) for p in date_part.split("-"))
    else:  # Kenya writes the day first
        day, month, year = (int(p) for p in re.split(r"[-/.]", date_part))
    if time_part:
        parts = [int(p) for p in time_part.split(":")]
        hour, minute, second = parts[0], parts[1], parts[2] if len(parts) == 3 else 0
    else:
        hour, minute, second = (23, 59, 59) if end_of_day else (0, 0, 0)
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=NAIROBI)
    except ValueError:
        return None
    return local.astimezone(UTC)


def _cell(cells: list[str], columns: dict[str, int], name: str) -> str:
    index = columns.get(name)
    if index is None or index >= len(cells):
        return ""
    return cells[index].strip()


def _parse_row(line: int, cells: list[str], columns: dict[str, int], width: int) -> StatementRow | None:
    if not any(c.strip() for c in cells):
        return None
    if len(cells) > width and any(c.strip() for c in cells[width:]):
        # An unquoted comma shifts every later column: refuse rather than read wrong amounts.
        raise StatementError(f"{len(cells)} fields but the header has {width} (unquoted comma?)", line)
    receipt = _cell(cells, columns, "receipt").upper()
    paid_raw, withdrawn_raw = _cell(cells, columns, "paid_in"), _cell(cells, columns, "withdrawn")
    time_raw = _cell(cells, columns, "completion_time")
    if not _RECEIPT.match(receipt):
        if not paid_raw and not withdrawn_raw and not time_raw:
            return None  # a note or footer line, not a transaction
        shown = receipt[:30] or "(empty)"
        raise StatementError(f"receipt '{shown}' is not an M-Pesa receipt number", line)
    return StatementRow(
        line=line,
        receipt=receipt,
        completion_time=parse_time(time_raw, line=line),
        # Exports without a status column list completed transactions only.
        status=_cell(cells, columns, "status") if "status" in columns else "Completed",
        paid_in=parse_amount(paid_raw, line=line, column="Paid In"),
        withdrawn=parse_amount(withdrawn_raw, line=line, column="Withdrawn"),
        details=mask_phones(_cell(cells, columns, "details"))[:200],  # may name the payer's number
        reason_type=_cell(cells, columns, "reason_type")[:100],
        linked_transaction_id=_cell(cells, columns, "linked_transaction_id")[:40],
    )
