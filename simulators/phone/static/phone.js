// One simulated phone: a Telegram pane (the stand-in's driver API, as /sim/telegram/chat uses it),
// an SMS pane and the M-Pesa prompt card. Everything shown is built with DOM APIs: no innerHTML.
// A PIN typed on the card is checked here (4 digits) and never sent: only the choice is (Property 48).

import {$, call, config, el, isWebUrl, local, telegram, time} from "./util.js";

const TAGS = {bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "pre"};

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
export function Phone(root) {
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
