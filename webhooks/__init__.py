"""aiohttp routes for providers: M-Pesa callbacks, Africa's Talking, Telegram webhook, health."""
