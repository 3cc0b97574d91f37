"""``GET /sim/stand-ins`` in local mode: what stand-ins are mounted, and a five-step demo walk-through.

(``/sim/`` itself is the phone simulator, :mod:`simulators.phone`; links here are relative to ``/sim/``.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

# name -> (link, title, what to do there); shown only when that stand-in is mounted
STAND_INS = {
    "telegram": (
        "telegram/chat",
        "Telegram chat",
        "talk to the bot in your browser as a client or a practitioner (buttons, keyboards, edits).",
    ),
    "daraja": (
        "daraja/control/log",
        "Daraja (M-Pesa) log",
        "every STK Push, query and callback; 254708374149 pays, other last digits fail in set ways.",
    ),
    "at": ("at/", "Africa's Talking SMS", "SMS the service sent; send delivery reports for them."),
    "mail": ("mail/", "Captured e-mail", "e-mail the service sent (captured here, never delivered)."),
}
SERVICE_LINKS = (
    ("/healthz", "/healthz", "database and bot status (200, or 503 naming what is down)."),
    ("/metrics", "/metrics", "counts by state in the Prometheus text format (no personal data)."),
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Smiling Steps · local mode</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 760px; margin: 2em auto; padding: 0 1em; }}
code {{ background: #f3f3f3; padding: 0 3px; }} li {{ margin: 4px 0; }}</style></head>
<body>
<h1>Smiling Steps · local mode</h1>
<p>Every outside system is replaced by a stand-in speaking its real protocol.
Everything on one page: the <a href="./">phone simulator</a>.</p>
<h2>Stand-ins</h2>
<ul id="stand-ins">{links}</ul>
{real}
<h2>Demo in five steps</h2>
<ol>
<li><strong>Data.</strong> Local mode seeds an empty database at start: session types and two
practitioners, Brian Otieno linked to Telegram user 2001 of this chat and Dr. Amani Wanjiku to 2002,
in the order the booking chat lists them. (For a practitioner of your own:
<code>smiling-steps therapists add --name "Dr. Demo" --email demo@example.org --phone 0712000111
--telegram-user-id 2001</code>.)</li>
<li><strong>Book as a client.</strong> In the <a href="telegram/chat">Telegram chat</a> choose
<em>Wanjiru (1001)</em>, send <code>/book</code> and pick the top practitioner, session type, day and time,
choose <em>Skip</em> for e-mail, then <em>Confirm</em>: the bot answers “Request sent”.</li>
<li><strong>Approve as the practitioner.</strong> Open the chat as Telegram id 2001 (the
<em>Practitioner</em> button) and press <em>Approve</em> on “New booking request”.</li>
<li><strong>Pay.</strong> Back as Wanjiru, press <em>Pay with M-Pesa</em> on “Your booking is approved”,
then <em>Share my phone number</em> (254708374149): the progress message turns into
“Payment received”.</li>
<li><strong>Look behind the scenes.</strong> The <a href="daraja/control/log">Daraja log</a> shows the
STK Push and its callback, <a href="mail/">e-mail</a> and <a href="at/">SMS</a> what was sent,
<a href="/metrics">/metrics</a> the counts.</li>
</ol>
</body></html>
"""


def _item(href: str, title: str, what: str) -> str:
    return f'<li><a href="{href}">{title}</a> — {what}</li>'


def index_page(mounted: Collection[str]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler for ``GET /sim/stand-ins`` listing the stand-ins in ``mounted`` (keys of ``STAND_INS``)."""
    links = "".join(_item(*STAND_INS[name]) for name in STAND_INS if name in mounted)
    links += "".join(_item(*link) for link in SERVICE_LINKS)
    missing = [STAND_INS[name][1] for name in STAND_INS if name not in mounted]
    real = f"<p>Configured for real (no stand-in): {', '.join(missing)}.</p>" if missing else ""
    page = _PAGE.format(links=links, real=real)  # only constants above: nothing to escape

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    return handler


async def to_index(request: web.Request) -> web.Response:
    """``GET /sim`` → ``/sim/`` (the phone page's links are relative to it)."""
    raise web.HTTPFound(request.path + "/")
