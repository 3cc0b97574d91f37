// The phone simulator page: the client's and the practitioner's phones, personas, M-Pesa prompts,
// and live updates over Server-Sent Events (each "change" event names what to read again).

import {Phone} from "./phone.js";
import {refreshDaraja, refreshMail} from "./panels.js";
import {$, call, config, el, kenyan, local, telegram} from "./util.js";

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
    Object.assign(config, await call("GET", "phone/api/config"));
    for (const phone of [client, practitioner]) {
      if (!config.telegram) phone.show("sms");
    }
    const wanjiru = buildPersonas();
    const users = await loadPractitioners();
    if (users && users.length) await holdPractitioner();
    await choosePersona(wanjiru, config.clients[0].telegram_id, config.clients[0].name, config.clients[0].phone);
  } catch (err) { client.status(err.message); }
})();
