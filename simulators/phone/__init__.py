"""The phone simulator: one page (``/sim/`` in local mode) showing every stand-in as a person sees it.

Client and practitioner phones (Telegram chat through the Telegram stand-in's driver API, an SMS
thread with the shortcode), the M-Pesa prompt of the Daraja stand-in's interactive mode, the
captured mailbox and a readable Daraja log, updated live over Server-Sent Events.

Static files only (``static/``: no build step, no inline script, CSP self-only). Like every
stand-in it imports nothing from the product: the SMS thread reaches the service the way
Africa's Talking does, by POSTing AT's inbound form to the service's SMS hook.
"""

from simulators.phone.app import PhoneSources, create_app, page

__all__ = ["PhoneSources", "create_app", "page"]
