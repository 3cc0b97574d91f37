"""Notifications: what to tell whom, the outbox, its dispatcher, reminders and senders."""
