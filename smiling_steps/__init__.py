"""Composition root: the ``smiling-steps`` CLI and ``serve``. Nothing imports this package."""
