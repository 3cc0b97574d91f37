"""Read-only reports for the admin site: the dashboard's figures (``dashboard``), the
transaction list (``transactions``), its CSV export (``transactions_csv``), one attempt's
detail with its audit timeline (``transaction_detail``) and the test-mode summary
(``test_summary``). Queries only, no state changes; every report takes the environment to
report on, so test money never mixes with real (Property 81).
"""
