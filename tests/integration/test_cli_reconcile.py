"""``smiling-steps reconcile`` as a subprocess: a statement compared with the database, the report
written, a bad statement refused in one line (local mode, SQLite in an empty directory)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli import assert_one_line_failure, run

STATEMENT = (
    "Receipt No.,Completion Time,Details,Transaction Status,Paid In,Withdrawn\n"
    'SCCSTRANGE,2024-03-14 09:00:00,Pay Bill Online,Completed,"1,000.00",\n'
)


# Feature: mpesa-payment-integration, Property 59: Reconciliation Generates Report
def test_reconcile_compares_a_statement_and_writes_the_report(tmp_path: Path) -> None:
    (tmp_path / "statement.csv").write_text(STATEMENT)
    result = run(tmp_path, "reconcile", "--statement", "statement.csv", "--no-query", "--report", "out.csv")
    assert result.returncode == 1, result.stderr  # a payment we know nothing of is a discrepancy
    assert "Traceback" not in result.stderr
    assert (
        "Reconciliation of simulator payments" in result.stdout and "1 missing on our side" in result.stdout
    )
    report = (tmp_path / "out.csv").read_text()
    assert report.startswith("category,receipt") and "missing_on_our_side,SCCSTRANGE" in report


def test_reconcile_refuses_a_malformed_statement_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "statement.csv").write_text(STATEMENT + "SCC0000002,tomorrow,x,Completed,5,\n")
    line = assert_one_line_failure(
        run(tmp_path, "reconcile", "--statement", "statement.csv", "--no-query"), 2
    )
    assert "statement line 3" in line
