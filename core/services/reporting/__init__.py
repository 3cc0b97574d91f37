"""Read-only reports for the admin site: the dashboard's figures (``dashboard``), the
transaction list and its CSV export (``transactions``). Queries only, no state changes; every
function takes the environment to report on, so test money never mixes with real (Property 81).
"""
