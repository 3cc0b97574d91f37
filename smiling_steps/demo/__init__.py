"""``smiling-steps demo --scenario NAME``: scripted end-to-end walks through a local-mode service.

The scenarios drive the running service only through its HTTP interfaces (the Telegram stand-in's
driver API, the SMS hook, the Daraja simulator's control API, the mail and SMS captures) and print
a transcript as it happens, then a summary table.
"""
