"""The admin review queue: payment attempts in NEEDS_REVIEW and refunds due, with their
evidence (``queue``), and an admin's decision on one of them (``actions``)."""
