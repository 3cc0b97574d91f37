"""Read-only reports for the admin site: dashboard figures, the transaction list, its CSV
export, one attempt's detail and the test-mode summary. Queries only; no state changes."""
