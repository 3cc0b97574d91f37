"""Runtime settings admins change on the site: stored in the ``settings`` table, secrets encrypted.

Environment variables stay the bootstrap; a value saved here wins from then on, in every
process (each payment reads the table), without a restart.
"""
