"""``python -m bench chaos [options]``: the chaos run (bench/chaos.py); ``python -m bench`` lists commands."""

from __future__ import annotations

import sys

COMMANDS = {"chaos": "bench.chaos"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m bench chaos [--seed N] [--bookings N] [--database-url URL] [--pg-outage] ...")
        return 2
    from importlib import import_module

    module = import_module(COMMANDS[argv[0]])
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
