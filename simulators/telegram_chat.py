"""``GET /chat`` of the Telegram stand-in: a browser "phone" that talks to the bot.

The page uses only the stand-in's JSON driver API (``driver/...``, relative to the page, so it
works mounted at /sim/telegram and standalone). It shows what a phone would: each message's
``text`` with its ``entities`` (Telegram already parsed the bot's HTML), built as DOM nodes.
Bot or user text never goes through innerHTML; only b/i/u/s/code/pre and http(s) links are made,
and a per-response Content-Security-Policy nonce stops any other script as a second line.
"""

from __future__ import annotations

import secrets
from html import escape

from aiohttp import web

PRESETS = (
    # id, first name, phone: a client whose number pays in the Daraja stand-in, and the practitioners
    # (local mode links the demo practitioners to 2001, 2002 in the order the booking chat lists them)
    (1001, "Wanjiru", "254708374149"),
    (2001, "Practitioner", "254712000111"),
    (2002, "Practitioner 2", "254712000222"),
)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Telegram chat (local stand-in)</title>
<style nonce="{nonce}">
body {{ font-family: system-ui, sans-serif; margin: 0; background: #e6ebee; }}
header {{ background: #527da3; color: #fff; padding: 8px 12px; }}
header a {{ color: #fff; }}
main {{ max-width: 720px; margin: 0 auto; padding: 8px; }}
fieldset {{ border: 1px solid #b8c4cc; background: #fff; margin-bottom: 8px; }}
#messages {{ background: #fff; height: 55vh; overflow-y: auto; padding: 8px; border: 1px solid #b8c4cc; }}
.msg {{ max-width: 80%; margin: 6px 0; padding: 6px 10px; border-radius: 8px; }}
.msg.bot {{ background: #f1f1f1; }}
.msg.me {{ background: #dcf8c6; margin-left: auto; }}
.msg .text {{ white-space: pre-wrap; word-wrap: break-word; }}
.msg .meta {{ font-size: 11px; color: #777; text-align: right; }}
.row {{ display: flex; gap: 4px; margin-top: 4px; }}
.row > * {{ flex: 1; }}
button.inline, button.reply {{ padding: 6px; border: 1px solid #527da3; background: #fff;
  color: #2b5278; border-radius: 6px; cursor: pointer; }}
#keyboard {{ margin-top: 6px; }}
#send-form {{ display: flex; gap: 4px; margin-top: 6px; }}
#text {{ flex: 1; padding: 6px; }}
#status {{ color: #a00; min-height: 1.2em; }}
.hint {{ color: #555; font-size: 13px; }}
</style></head>
<body>
<header><strong>Telegram chat</strong> with the bot (local stand-in) ·
<a href="../">all stand-ins</a></header>
<main>
<fieldset id="who"><legend>Who are you?</legend>
  <div class="row">
    <label>Known users <select id="users"><option value="">(choose)</option></select></label>
    {presets}
  </div>
  <form id="user-form" class="row">
    <input id="user-id" name="id" placeholder="Telegram id, e.g. 1001" inputmode="numeric" required>
    <input id="user-name" name="first_name" placeholder="first name" required>
    <input id="user-phone" name="phone_number" placeholder="phone (for Share contact)">
    <button id="open" type="submit">Open chat</button>
  </form>
  <p class="hint">A practitioner chats here with the Telegram id stored for them
  (<code>smiling-steps therapists add … --telegram-user-id 2001</code>) or links one with
  <code>/start &lt;link code&gt;</code>.</p>
</fieldset>
<div id="chat-title" class="hint">No chat open.</div>
<div id="messages" aria-live="polite"></div>
<div id="keyboard"></div>
<form id="send-form"><input id="text" autocomplete="off" placeholder="Message or /command" disabled>
<button id="send" type="submit" disabled>Send</button></form>
<div id="status" role="status"></div>
</main>
<script nonce="{nonce}">
"use strict";
(function () {{
  const BASE = location.pathname.replace(/chat\\/?$/, "");
  const $ = (id) => document.getElementById(id);
  const TAGS = {{bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "pre"}};
  let userId = null;
  let version = -1;
  let names = new Map();  // Telegram id -> first name of the users the stand-in knows

  function el(tag, cls, text) {{
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }}
  function status(text) {{ $("status").textContent = text || ""; }}
  function isWebUrl(url) {{ return typeof url === "string" && /^https?:\\/\\//i.test(url); }}

  async function api(method, path, body) {{
    const options = {{method: method, headers: {{}}}};
    if (body !== undefined) {{
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }}
    const response = await fetch(BASE + "driver/" + path, options);
    const data = await response.json().catch(() => ({{error: "HTTP " + response.status}}));
    if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
    return data;
  }}

  // Telegram's entities (UTF-16 offsets, as JavaScript strings count) -> allowed elements only.
  function entityElement(entity) {{
    if (entity.type === "text_link") {{
      if (!isWebUrl(entity.url)) return null;
      const a = el("a");
      a.href = entity.url;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      return a;
    }}
    return TAGS[entity.type] ? el(TAGS[entity.type]) : null;
  }}
  function renderText(text, entities) {{
    const fragment = document.createDocumentFragment();
    const usable = (entities || []).filter((e) => e && Number.isInteger(e.offset)
      && Number.isInteger(e.length) && e.length > 0 && (TAGS[e.type] || e.type === "text_link"));
    const cuts = new Set([0, text.length]);
    for (const e of usable) {{
      cuts.add(Math.min(text.length, Math.max(0, e.offset)));
      cuts.add(Math.min(text.length, Math.max(0, e.offset + e.length)));
    }}
    const points = Array.from(cuts).sort((x, y) => x - y);
    for (let k = 0; k + 1 < points.length; k++) {{
      const start = points[k], end = points[k + 1];
      let node = document.createTextNode(text.slice(start, end));
      const covering = usable.filter((e) => e.offset <= start && e.offset + e.length >= end);
      for (const e of covering.reverse()) {{  // innermost first, the outermost ends up on top
        const wrapper = entityElement(e);
        if (wrapper) {{ wrapper.appendChild(node); node = wrapper; }}
      }}
      fragment.appendChild(node);
    }}
    return fragment;
  }}

  function inlineKeyboard(message) {{
    const rows = (message.reply_markup && message.reply_markup.inline_keyboard) || [];
    const box = el("div", "inline-keyboard");
    for (const row of rows) {{
      const line = el("div", "row");
      for (const button of row) {{
        if (typeof button.callback_data === "string") {{
          const b = el("button", "inline", button.text);
          b.type = "button";
          b.addEventListener("click", () => act(() => api("POST", "users/" + userId + "/press",
            {{message_id: message.message_id, data: button.callback_data}})));
          line.appendChild(b);
        }} else if (isWebUrl(button.url)) {{
          const a = el("a", "inline", button.text);
          a.href = button.url;
          a.rel = "noopener noreferrer";
          a.target = "_blank";
          line.appendChild(a);
        }} else {{
          line.appendChild(el("span", "inline", button.text));
        }}
      }}
      box.appendChild(line);
    }}
    return box;
  }}

  function renderMessages(messages) {{
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.replaceChildren();
    for (const m of messages) {{
      const item = el("div", "msg " + (m.from_bot ? "bot" : "me"));
      item.dataset.messageId = String(m.message_id);
      const body = el("div", "text");
      if (typeof m.text === "string") body.appendChild(renderText(m.text, m.entities));
      else if (m.contact) body.textContent = "\\u{{1F4C7}} contact " + m.contact.phone_number;
      else body.textContent = "[" + (m.other || "message") + "]";
      item.appendChild(body);
      if (m.from_bot) item.appendChild(inlineKeyboard(m));
      const when = new Date(1000 * (m.edit_date || m.date)).toLocaleTimeString();
      item.appendChild(el("div", "meta", (m.edit_date ? "edited " : "") + when));
      box.appendChild(item);
    }}
    if (atBottom) box.scrollTop = box.scrollHeight;
  }}

  function renderKeyboard(markup) {{
    const box = $("keyboard");
    box.replaceChildren();
    for (const row of (markup && markup.keyboard) || []) {{
      const line = el("div", "row");
      for (const button of row) {{
        const label = typeof button === "string" ? button : button.text;
        const contact = typeof button === "object" && button.request_contact;
        const b = el("button", "reply", (contact ? "\\u{{1F4F1}} " : "") + label);
        b.type = "button";
        b.title = contact ? "shares your own contact (the phone number above)" : "sends this text";
        b.addEventListener("click", () => act(() => api("POST", "users/" + userId + "/tap",
          {{label: label}})));
        line.appendChild(b);
      }}
      box.appendChild(line);
    }}
  }}

  async function refresh(force) {{
    if (userId === null) return;
    const data = await api("GET", "chats/" + userId + "/messages");
    if (!force && data.version === version) return;
    version = data.version;
    renderMessages(data.messages);
    renderKeyboard((await api("GET", "chats/" + userId + "/keyboard")).reply_keyboard);
  }}

  async function act(action) {{
    try {{ await action(); status(""); await refresh(true); }} catch (err) {{ status(err.message); }}
  }}

  async function loadUsers() {{
    const select = $("users");
    const users = (await api("GET", "users")).users;
    names = new Map(users.map((u) => [u.id, u.first_name]));
    select.replaceChildren(el("option", "", "(choose)"));
    select.firstChild.value = "";
    for (const u of users) {{
      const phone = u.phone_number ? " · " + u.phone_number : "";
      const option = el("option", "", u.id + " · " + u.first_name + phone);
      option.value = String(u.id);
      option.selected = u.id === userId;
      select.appendChild(option);
    }}
  }}

  function openChat(id, name) {{
    userId = id;
    version = -1;
    $("chat-title").textContent = "Chatting as " + name + " (Telegram id " + id + ")";
    $("text").disabled = false;
    $("send").disabled = false;
    const url = new URL(location.href);
    url.searchParams.set("user", String(id));
    history.replaceState(null, "", url);
    $("text").focus();
    return act(loadUsers);
  }}

  async function createUser(id, name, phone) {{
    // started: a person using this page has opened the bot before, so the bot may write first
    const user = await api("POST", "users",
      {{id: id, first_name: name, phone_number: phone || null, started: true}});
    await openChat(user.id, user.first_name);
  }}

  $("user-form").addEventListener("submit", (event) => {{
    event.preventDefault();
    const id = Number($("user-id").value.trim());
    if (!Number.isInteger(id) || id <= 0) {{
      status("The Telegram id must be a positive whole number.");
      return;
    }}
    act(() => createUser(id, $("user-name").value.trim(), $("user-phone").value.trim()));
  }});
  for (const preset of document.querySelectorAll("button.preset")) {{
    preset.addEventListener("click", () => {{
      $("user-id").value = preset.dataset.id;
      $("user-name").value = preset.dataset.name;
      $("user-phone").value = preset.dataset.phone;
      act(() => createUser(Number(preset.dataset.id), preset.dataset.name, preset.dataset.phone));
    }});
  }}
  $("users").addEventListener("change", () => {{
    const option = $("users").selectedOptions[0];
    if (option && option.value) openChat(Number(option.value), names.get(Number(option.value)) || "");
  }});
  $("send-form").addEventListener("submit", (event) => {{
    event.preventDefault();
    const text = $("text").value;
    if (!text.trim() || userId === null) return;
    $("text").value = "";
    act(() => api("POST", "users/" + userId + "/text", {{text: text}}));
  }});

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // New and edited messages: re-read when the stand-in reports a change, at least every second.
  async function poll() {{
    for (;;) {{
      try {{
        await refresh(false);
        if (userId === null) await sleep(1000);
        else await api("GET", "events?since=" + version + "&timeout=1");
      }} catch (err) {{
        status(err.message);
        await sleep(1000);
      }}
    }}
  }}

  (async function start() {{
    try {{
      await loadUsers();
      const wanted = Number(new URL(location.href).searchParams.get("user"));
      if (names.has(wanted)) await openChat(wanted, names.get(wanted));
    }} catch (err) {{ status(err.message); }}
    poll();
  }})();
}})();
</script>
</body></html>
"""


def _presets() -> str:
    # constants only, but escaped anyway so a later edit cannot break out of the attribute
    return "".join(
        f'<button type="button" class="preset" data-id="{uid}" data-name="{escape(name)}" '
        f'data-phone="{escape(phone)}">{escape(name)} ({uid})</button>'
        for uid, name, phone in PRESETS
    )


async def chat_page(_request: web.Request) -> web.Response:
    """The chat page; a fresh nonce lets its own script and style run and nothing else."""
    nonce = secrets.token_urlsafe(16)
    response = web.Response(text=_PAGE.format(nonce=nonce, presets=_presets()), content_type="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
