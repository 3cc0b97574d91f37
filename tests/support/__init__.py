"""Shared test helpers (fixtures as async context managers, importable from any test)."""
