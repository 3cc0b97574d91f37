// Small helpers shared by the phone simulator's modules (DOM building, fetch, phone numbers).

export const config = {};  // GET phone/api/config, filled in by main.js before anything is shown
export const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
export function isWebUrl(url) { return typeof url === "string" && /^https?:\/\//i.test(url); }
export function time(iso) { const d = new Date(iso); return isNaN(d) ? "" : d.toLocaleTimeString(); }
export function kenyan(raw) {  // "0712 345 678", "+254712345678" -> "254712345678", else null
  const match = /^(?:\+?254|0)?([17]\d{8})$/.exec(String(raw).replace(/[\s\-()]/g, ""));
  return match ? "254" + match[1] : null;
}
export function local(number) { return "0" + String(number).slice(3); }  // 254708374149 -> 0708374149

export async function call(method, path, body) {
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
export const telegram = (method, path, body) => call(method, "telegram/driver/" + path, body);
