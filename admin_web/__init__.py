"""The admin site (aiohttp-jinja2): an adapter over the services, for the practice's staff."""
