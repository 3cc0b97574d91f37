// The phone simulator page: two phones (Telegram + SMS), the M-Pesa prompt, the mailbox, the Daraja log.
// Everything shown is built with DOM APIs (textContent, createElement): no innerHTML anywhere.
// The Telegram panes speak the Telegram stand-in's driver API, as /sim/telegram/chat does.
// An M-Pesa PIN is checked here (4 digits) and never sent anywhere: only the choice is (Property 48).
"use strict";
(function () {
  const TAGS = {bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "pre"};
  const $ = (id) => document.getElementById(id);
  let config = null;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function isWebUrl(url) { return typeof url === "string" && /^https?:\/\//i.test(url); }
  function time(iso) { const d = new Date(iso); return isNaN(d) ? "" : d.toLocaleTimeString(); }
  function kenyan(raw) {  // "0712 345 678", "+254712345678" -> "254712345678", else null
    const match = /^(?:\+?254|0)?([17]\d{8})$/.exec(String(raw).replace(/[\s\-()]/g, ""));
    return match ? "254" + match[1] : null;
  }
  function local(number) { return "0" + String(number).slice(3); }  // 254708374149 -> 0708374149

  async function call(method, path, body) {
    const options = {method: method, headers: {}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    const data = await response.json().catch(() => ({error: "HTTP " + response.status}));
    if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
    return data;
  }
  const telegram = (method, path, body) => call(method, "telegram/driver/" + path, body);

  // -- Telegram text with entities (UTF-16 offsets, as JavaScript counts) -> allowed elements only
  function entityElement(entity) {
    if (entity.type === "text_link") {
      if (!isWebUrl(entity.url)) return null;
      const a = el("a");
      a.href = entity.url;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      return a;
    }
    return TAGS[entity.type] ? el(TAGS[entity.type]) : null;
  }
  function renderText(text, entities) {
    const fragment = document.createDocumentFragment();
    const usable = (entities || []).filter((e) => e && Number.isInteger(e.offset)
      && Number.isInteger(e.length) && e.length > 0 && (TAGS[e.type] || e.type === "text_link"));
    const cuts = new Set([0, text.length]);
    for (const e of usable) {
      cuts.add(Math.min(text.length, Math.max(0, e.offset)));
      cuts.add(Math.min(text.length, Math.max(0, e.offset + e.length)));
    }
    const points = Array.from(cuts).sort((x, y) => x - y);
    for (let k = 0; k + 1 < points.length; k++) {
      const start = points[k], end = points[k + 1];
      let node = document.createTextNode(text.slice(start, end));
      const covering = usable.filter((e) => e.offset <= start && e.offset + e.length >= end);
      for (const e of covering.reverse()) {
        const wrapper = entityElement(e);
        if (wrapper) { wrapper.appendChild(node); node = wrapper; }
      }
      fragment.appendChild(node);
    }
    return fragment;
  }

  // -- one phone: Telegram pane, SMS pane, M-Pesa card
  function Phone(root) {
    root.appendChild($("screen-template").content.cloneNode(true));
    const q = (cls) => root.querySelector("." + cls);
    const self = {userId: null, name: "", number: null, version: -1, ignored: new Set(), prompt: null};

    function status(text) { q("status").textContent = text || ""; }
    async function act(action) {
      try { await action(); status(""); await self.refresh(true); } catch (err) { status(err.message); }
    }
    self.status = status;

    for (const tab of root.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => self.show(tab.dataset.tab));
    }
    self.show = function (name) {
      for (const tab of root.querySelectorAll(".tab")) {
        tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
      }
      q("telegram-pane").hidden = name !== "telegram";
      q("sms-pane").hidden = name !== "sms";
    };

    function inlineKeyboard(message) {
      const rows = (message.reply_markup && message.reply_markup.inline_keyboard) || [];
      const box = el("div", "inline-keyboard");
      for (const row of rows) {
        const line = el("div", "row");
        for (const button of row) {
          if (typeof button.callback_data === "string") {
            const b = el("button", "inline", button.text);
            b.type = "button";
            b.addEventListener("click", () => act(() => telegram("POST", "users/" + self.userId + "/press",
              {message_id: message.message_id, data: button.callback_data})));
            line.appendChild(b);
          } else if (isWebUrl(button.url)) {
            const a = el("a", "inline", button.text);
            a.href = button.url;
            a.rel = "noopener noreferrer";
            a.target = "_blank";
            line.appendChild(a);
          } else {
            line.appendChild(el("span", "inline", button.text));
          }
        }
        box.appendChild(line);
      }
      return box;
    }
    function renderMessages(messages) {
      const box = q("messages");
      box.replaceChildren();
      for (const m of messages) {
        const item = el("div", "msg " + (m.from_bot ? "bot" : "me"));
        item.dataset.messageId = String(m.message_id);
        const body = el("div", "text");
        if (typeof m.text === "string") body.appendChild(renderText(m.text, m.entities));
        else if (m.contact) body.textContent = "\u{1F4C7} contact " + m.contact.phone_number;
        else body.textContent = "[" + (m.other || "message") + "]";
        item.appendChild(body);
        if (m.from_bot) item.appendChild(inlineKeyboard(m));
        const when = new Date(1000 * (m.edit_date || m.date)).toLocaleTimeString();
        item.appendChild(el("div", "meta", (m.edit_date ? "edited " : "") + when));
        box.appendChild(item);
      }
    }
    function renderKeyboard(markup) {
      const box = q("keyboard");
      box.replaceChildren();
      for (const row of (markup && markup.keyboard) || []) {
        const line = el("div", "row");
        for (const button of row) {
          const label = typeof button === "string" ? button : button.text;
          const contact = typeof button === "object" && button.request_contact;
          const b = el("button", "reply", (contact ? "\u{1F4F1} " : "") + label);
          b.type = "button";
          b.addEventListener("click", () => act(() => telegram("POST", "users/" + self.userId + "/tap",
            {label: label})));
          line.appendChild(b);
        }
        box.appendChild(line);
      }
    }
    self.refresh = async function (force) {
      if (self.userId === null || !config.telegram) return;
      const data = await telegram("GET", "chats/" + self.userId + "/messages");
      if (!force && data.version === self.version) return;
      self.version = data.version;
      renderMessages(data.messages);
      renderKeyboard((await telegram("GET", "chats/" + self.userId + "/keyboard")).reply_keyboard);
      q("messages").scrollTop = q("messages").scrollHeight;  // like a phone: the newest in view
    };

    function renderSms(messages) {
      const box = q("sms-messages");
      box.replaceChildren();
      for (const m of messages) {
        const item = el("div", "msg " + (m.from_phone ? "out" : "in"));
        item.appendChild(el("div", "text", m.text));
        item.appendChild(el("div", "meta", time(m.at) + (m.from_phone ? "" : " · " + m.status)));
        box.appendChild(item);
      }
      box.scrollTop = box.scrollHeight;
    }
    self.refreshSms = async function () {
      if (!self.number || !config.sms) return;
      renderSms((await call("GET", "phone/api/sms?number=" + encodeURIComponent(self.number))).messages);
    };

    // who holds this phone: a Telegram user (may be null) and a number (may be null)
    self.hold = async function (user, number) {
      self.userId = user ? user.id : null;
      self.name = user ? user.first_name : "";
      self.number = number || null;
      self.version = -1;
      q("chat-title").textContent = user
        ? "Telegram: " + user.first_name + " (id " + user.id + ")" : "No Telegram account on this phone.";
      q("chat-text").disabled = q("send").disabled = !user;
      q("sms-title").textContent = number
        ? "SMS between " + local(number) + " and " + config.shortcode : "No number on this phone.";
      q("sms-text").disabled = q("sms-send").disabled = !number || !config.sms;
      q("messages").replaceChildren();
      q("keyboard").replaceChildren();
      await Promise.all([self.refresh(true), self.refreshSms()]);
    };

    q("send-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = q("chat-text").value;
      if (!text.trim() || self.userId === null) return;
      q("chat-text").value = "";
      act(() => telegram("POST", "users/" + self.userId + "/text", {text: text}));
    });
    q("sms-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = q("sms-text").value;
      if (!text.trim() || !self.number) return;
      q("sms-text").value = "";
      act(async () => {
        const sent = await call("POST", "phone/api/sms", {from: self.number, text: text});
        await self.refreshSms();
        if (sent.hook_status !== 200) throw new Error("The service's SMS hook answered HTTP " + sent.hook_status);
      });
    });

    // -- the M-Pesa card
    const card = q("mpesa"), pin = q("mpesa-pin");
    self.showPrompt = function (prompt) {
      if (prompt && self.prompt && prompt.checkout_request_id === self.prompt.checkout_request_id) return;
      self.prompt = prompt;
      pin.value = "";
      q("mpesa-error").textContent = "";
      card.hidden = !prompt;
      if (!prompt) return;
      const amount = Number(prompt.amount).toLocaleString("en-US");
      q("mpesa-text").textContent = "Pay KES " + amount + " to " + prompt.merchant_name + ", account "
        + prompt.account_reference + ". Enter M-PESA PIN";
      q("mpesa-to").textContent = "on " + local(prompt.phone);
      pin.focus();
    };
    for (const button of card.querySelectorAll("button[data-choice]")) {
      button.addEventListener("click", () => answer(button.dataset.choice));
    }
    pin.addEventListener("keydown", (event) => { if (event.key === "Enter") answer("pay"); });
    async function answer(choice) {
      const prompt = self.prompt;
      if (!prompt) return;
      if ((choice === "pay" || choice === "wrong_pin") && !/^\d{4}$/.test(pin.value)) {
        q("mpesa-error").textContent = "Enter a 4-digit PIN (any 4 digits).";
        return;
      }
      pin.value = "";  // the PIN goes nowhere: only the choice below is sent
      self.ignored.add(prompt.checkout_request_id);
      self.showPrompt(null);
      if (choice === "ignore") { status("Prompt ignored: M-Pesa ends it as timed out (1037)."); return; }
      try {
        await call("POST", "phone/api/prompts/" + encodeURIComponent(prompt.checkout_request_id),
          {choice: choice});
        status("");
      } catch (err) { status(err.message); }
    }
    return self;
  }

  // -- personas and practitioners
  const client = Phone($("client-phone"));
  const practitioner = Phone($("practitioner-phone"));
  let events = null;
  const extraNumbers = new Set();  // more handsets whose prompts appear on the client phone

  async function ensureUser(id, name, phone) {
    return telegram("POST", "users", {id: id, first_name: name, phone_number: phone, started: true});
  }
  async function choosePersona(button, id, name, number) {
    for (const b of $("personas").querySelectorAll("button")) b.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
    const user = config.telegram ? await ensureUser(id, name, number) : null;
    await client.hold(user, number);
    connect();
  }
  function personaButton(label, action) {
    const b = el("button", "persona", label);
    b.type = "button";
    b.setAttribute("aria-pressed", "false");
    b.addEventListener("click", () => action(b).catch((err) => client.status(err.message)));
    $("personas").appendChild(b);
    return b;
  }
  function buildPersonas() {
    const first = [];
    for (const c of config.clients) {
      first.push(personaButton(c.name + " · " + local(c.phone),
        (b) => choosePersona(b, c.telegram_id, c.name, c.phone)));
    }
    const custom = personaButton("Custom number…", async (b) => {
      $("custom-form").hidden = false;
      for (const other of $("personas").querySelectorAll("button")) other.setAttribute("aria-pressed", "false");
      b.setAttribute("aria-pressed", "true");
      $("custom-number").focus();
    });
    $("custom-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const number = kenyan($("custom-number").value);
      if (!number) { client.status("Type a Kenyan mobile number, like 0712 345 678."); return; }
      const id = 3000000000 + Number(number.slice(4));  // a stable Telegram id for this number
      choosePersona(custom, id, $("custom-name").value.trim() || "Guest", number)
        .catch((err) => client.status(err.message));
    });
    return first[0];
  }
  async function loadPractitioners() {
    if (!config.telegram) return;
    const select = $("practitioners");
    const clientIds = new Set(config.clients.map((c) => c.telegram_id));
    const users = (await telegram("GET", "users")).users.filter((u) => !clientIds.has(u.id) && u.id < 3000000000);
    const current = select.value;
    select.replaceChildren();
    for (const u of users) {
      const option = el("option", "", u.first_name + " (id " + u.id + ")" + (u.phone_number ? " · " + local(u.phone_number) : ""));
      option.value = String(u.id);
      select.appendChild(option);
    }
    if (current && users.some((u) => String(u.id) === current)) select.value = current;
    return users;
  }
  async function holdPractitioner() {
    const users = (await telegram("GET", "users")).users;
    const user = users.find((u) => String(u.id) === $("practitioners").value) || null;
    await practitioner.hold(user, user ? user.phone_number : null);
  }
  $("practitioners").addEventListener("change", () => holdPractitioner().catch((e) => practitioner.status(e.message)));
  $("extra-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const number = kenyan($("extra-number").value);
    if (!number) { client.status("Type a Kenyan mobile number, like 0712 345 678."); return; }
    if (extraNumbers.size < 8) extraNumbers.add(number);
    $("extra-number").value = "";
    connect();
  });
  $("practitioner-sms-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const number = kenyan($("practitioner-number").value);
    if (!number) { practitioner.status("Type a Kenyan mobile number, like 0712 345 678."); return; }
    practitioner.hold(null, number).then(() => practitioner.show("sms"))
      .catch((err) => practitioner.status(err.message));
  });

  // -- M-Pesa prompts: on the phone holding that number, else on the client's
  async function refreshPrompts() {
    if (!config.daraja) return;
    const waiting = (await call("GET", "phone/api/prompts")).prompts;
    for (const phone of [client, practitioner]) {
      const mine = waiting.filter((p) => !phone.ignored.has(p.checkout_request_id)
        && (p.phone === phone.number || (phone === client && p.phone !== practitioner.number)));
      phone.showPrompt(mine[0] || null);
    }
  }

  // -- mailbox
  let openMail = null, newestMail = 0;
  function showMail(m) {
    openMail = m.id;
    for (const b of $("mail-list").querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(b.dataset.id === String(m.id)));
    }
    $("mail-view").hidden = false;
    $("mail-subject").textContent = m.subject || "(no subject)";
    $("mail-meta").textContent = "From " + m.from + " to " + m.to.join(", ") + " · " + time(m.received_at);
    const frame = $("mail-html");
    frame.hidden = !m.has_html;
    const src = m.has_html ? "phone/api/mail/" + m.id + "/html" : "about:blank";
    if (frame.getAttribute("src") !== src) frame.setAttribute("src", src);
    $("mail-text").textContent = m.text || "(no plain-text part)";
    const list = $("mail-attachments");
    list.replaceChildren();
    for (const a of m.attachments) list.appendChild(el("li", "", a.name + " (" + a.type + ", " + a.size + " bytes)"));
    if (!m.attachments.length) list.appendChild(el("li", "hint", "none"));
  }
  async function refreshMail() {
    if (!config.mail) { $("mailbox").hidden = true; return; }
    const messages = (await call("GET", "phone/api/mail")).messages;
    const list = $("mail-list");
    list.replaceChildren();
    for (const m of messages) {
      const b = el("button", "mail-item");
      b.type = "button";
      b.dataset.id = String(m.id);
      b.appendChild(el("strong", "", m.subject || "(no subject)"));
      b.appendChild(el("div", "hint", m.to.join(", ") + " · " + time(m.received_at)));
      b.addEventListener("click", () => showMail(m));
      const item = el("li");
      item.appendChild(b);
      list.appendChild(item);
    }
    if (!messages.length) list.appendChild(el("li", "hint", "No e-mail yet."));
    const newest = messages.length ? messages[0].id : 0;
    const current = (newest > newestMail ? null : messages.find((m) => m.id === openMail)) || messages[0];
    newestMail = newest;
    if (current) showMail(current);
  }

  // -- Daraja log
  const WHAT = {oauth: "OAuth token", stk_push: "STK Push", stk_query: "STK Query"};
  function resultOf(entry) {
    const r = entry.kind === "callback" ? ((entry.body || {}).Body || {}).stkCallback : entry.response;
    if (!r || typeof r !== "object") return "";
    if (r.ResultCode !== undefined) return r.ResultCode + " " + (r.ResultDesc || "");
    if (r.ResponseCode !== undefined) return r.ResponseCode + " " + (r.ResponseDescription || "");
    if (r.errorCode !== undefined) return r.errorCode + " " + (r.errorMessage || "");
    return r.access_token ? "token issued" : "";
  }
  async function refreshDaraja() {
    if (!config.daraja) { $("daraja").hidden = true; return; }
    const entries = (await call("GET", "daraja/control/log")).entries;
    const pushedAt = new Map();
    for (const e of entries) {
      if (e.endpoint === "stk_push" && e.checkout_request_id) pushedAt.set(e.checkout_request_id, new Date(e.at));
    }
    const body = $("daraja-log").querySelector("tbody");
    body.replaceChildren();
    for (const e of entries.slice(-200).reverse()) {
      const row = el("tr", "kind-" + (e.kind === "callback" ? "callback" : e.endpoint));
      const phone = e.kind === "request" && e.body && e.body.PhoneNumber ? local(e.body.PhoneNumber)
        : (e.checkout_request_id ? "…" + e.checkout_request_id.slice(-4) : "");
      const started = pushedAt.get(e.checkout_request_id);
      const timing = started && e.endpoint !== "stk_push"
        ? "+" + ((new Date(e.sent_at || e.at) - started) / 1000).toFixed(1) + " s after push" : "";
      const status = e.kind === "callback" ? (e.status || e.error || "") : e.status;
      const ok = typeof status === "number" && status < 300;
      for (const text of [e.seq, time(e.at), e.kind === "callback" ? "Callback" : (WHAT[e.endpoint] || e.endpoint),
        phone, status, resultOf(e), timing]) row.appendChild(el("td", "", text));
      row.children[4].className = ok ? "ok" : "bad";
      const json = el("td");
      const details = el("details");
      details.appendChild(el("summary", "", "JSON"));
      details.appendChild(el("pre", "", JSON.stringify(e, null, 2)));
      json.appendChild(details);
      row.appendChild(json);
      body.appendChild(row);
    }
  }

  // -- live updates (Server-Sent Events); the numbers on the client phone answer their own prompts
  const REFRESH = {
    telegram: () => Promise.all([client.refresh(false), practitioner.refresh(false), loadPractitioners()]),
    prompts: refreshPrompts,
    daraja: refreshDaraja,
    sms: () => Promise.all([client.refreshSms(), practitioner.refreshSms()]),
    mail: refreshMail,
  };
  function connect() {
    if (events) events.close();
    const handle = [client.number, ...extraNumbers].filter(Boolean).join(",");
    events = new EventSource("phone/api/events?handle=" + encodeURIComponent(handle));
    events.addEventListener("hello", () => {
      const numbers = handle ? handle.split(",").map(local).join(", ") : "";
      $("live").textContent = "live" + (numbers ? " · M-Pesa prompts for " + numbers + " appear here" : "");
      refreshAll();
    });
    events.addEventListener("change", (event) => {
      for (const source of JSON.parse(event.data).sources) {
        if (REFRESH[source]) REFRESH[source]().catch((err) => client.status(err.message));
      }
    });
    events.onerror = () => { $("live").textContent = "reconnecting…"; };
  }
  function refreshAll() {
    return Promise.all(Object.values(REFRESH).map((f) => f().catch((err) => client.status(err.message))));
  }

  (async function start() {
    try {
      config = await call("GET", "phone/api/config");
      for (const phone of [client, practitioner]) {
        if (!config.telegram) phone.show("sms");
      }
      const wanjiru = buildPersonas();
      const users = await loadPractitioners();
      if (users && users.length) await holdPractitioner();
      await choosePersona(wanjiru, config.clients[0].telegram_id, config.clients[0].name, config.clients[0].phone);
    } catch (err) { client.status(err.message); }
  })();
})();
