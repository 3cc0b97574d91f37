"""Notifications: what to tell whom, the outbox, its dispatcher, reminders and payment notices.

The senders that talk to outside services live at the edge (``senders/``, ``bot/sender.py``).
"""
