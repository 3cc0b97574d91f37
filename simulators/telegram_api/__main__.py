"""``python -m simulators.telegram_api --port 8091``: serve the stand-in alone."""

from simulators.telegram_api.app import main

main()
