"""The Telegram adapter: python-telegram-bot handlers, rendering, the Telegram sender, progress."""
