"""Senders: adapters that hand a rendered message to an outside service (the edge).

- ``sms``: Africa's Talking (the ``africastalking`` SDK), one client per sender number;
- ``email``: SMTP (``aiosmtplib``).

They implement ``core.services.notifications.outbox_types.Sender``; the Telegram sender
lives with the bot (``bot/sender.py``). The composition root (``smiling_steps.app``) builds
them from the settings and hands them to the outbox dispatcher; nothing in ``core`` imports
this package.
"""
