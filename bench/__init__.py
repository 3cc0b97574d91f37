"""Benchmarks and the chaos run (not tests): ``python -m bench chaos`` or ``python bench/NAME.py``."""
