// The mailbox (HTML e-mail in a sandboxed frame, plain text beside it) and the readable Daraja log.

import {$, call, config, el, local, time} from "./util.js";

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
export async function refreshMail() {
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
export async function refreshDaraja() {
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
