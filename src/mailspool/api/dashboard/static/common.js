// What every dashboard page shares: requests with the session's CSRF token, polling,
// building elements (text is always set as text, never parsed as HTML), formats, and
// the confirmation dialog.
"use strict";

const Dash = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  // under two seconds between the end of one poll and the start of the next
  const POLL_MS = 1500;

  function detail(data) {
    if (!data) return "";
    if (Array.isArray(data.errors)) {
      return data.errors.map((e) => `${e.field}: ${e.reason}`).join("; ");
    }
    return typeof data.detail === "string" ? data.detail : "";
  }

  // JSON from this server; a request that changes something carries the CSRF token.
  async function request(method, url, body) {
    const headers = { Accept: "application/json" };
    const options = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    if (response.status === 401) {
      const here = location.pathname + location.search;
      location.assign(`/ui/login?next=${encodeURIComponent(here)}`);
      throw new Error("signed out");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const error = new Error(detail(data) || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // Replace a table body's rows: ``cells(row)`` gives each row's cells (text or nodes).
  function fill(tbody, rows, cells, empty) {
    tbody.replaceChildren();
    for (const row of rows) {
      tbody.append(el("tr", {}, ...cells(row).map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))));
    }
    if (!rows.length && empty) {
      const columns = tbody.closest("table").querySelectorAll("thead th").length || 1;
      tbody.append(el("tr", {}, el("td", { colspan: columns, class: "empty", text: empty })));
    }
  }

  const live = () => document.getElementById("live");

  function notice(text, ok) {
    const box = document.getElementById("notice");
    box.textContent = text;
    box.className = ok ? "notice ok" : "notice";
    box.hidden = !text;
  }

  // Call ``load`` now and again POLL_MS after each call ends; ``render`` gets its
  // result only when it differs from the last one (a table is not rebuilt under the
  // pointer for nothing). Returns a function that polls at once.
  function poll(load, render) {
    let last = null;
    let timer = null;
    async function tick() {
      clearTimeout(timer);
      try {
        const data = await load();
        const text = JSON.stringify(data);
        if (text !== last) {
          last = text;
          render(data);
        }
        live().textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
        live().classList.remove("stale");
      } catch (error) {
        live().textContent = `Not updated: ${error.message}`;
        live().classList.add("stale");
      }
      timer = setTimeout(tick, POLL_MS);
    }
    tick();
    return () => {
      last = null;
      tick();
    };
  }

  // The confirmation dialog: resolves true when confirmed.
  function confirm(text, label) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    document.getElementById("confirm-ok").textContent = label || "Confirm";
    dialog.returnValue = "cancel";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
      document.getElementById("confirm-cancel").focus();
    });
  }

  const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
  const rate = (r) => (r === null || r === undefined ? "–" : `${Number(r).toFixed(r < 10 ? 2 : 1)}/s`);
  const plural = (n, word) => `${number(n)} ${word}${n === 1 ? "" : "s"}`;

  function duration(s) {
    if (s === null || s === undefined) return "–";
    if (s === 0) return "done";
    if (s < 1) return "under 1 s";
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = Math.round(s % 60);
    return h ? `${h} h ${m} min` : m ? `${m} min ${sec} s` : `${sec} s`;
  }

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  const KINDS = { paused: "Paused", relay: "Relay", provider: "Provider shaping", window: "Send window", rate: "Rate limit", retry: "Retries" };

  // What holds a campaign back, as a list (or a dash).
  function heldBy(list) {
    if (!list || !list.length) return document.createTextNode("nothing known");
    return el("ul", { class: "held" }, ...list.map((h) => el("li", { dataset: { limit: h.limit } }, el("strong", { text: `${KINDS[h.limit] || h.limit}: ` }), h.detail)));
  }

  // One message, as the lookup and the dead-letter page show it: its fields, the
  // attempts the event log has kept, and ``actions`` (nodes) under them.
  function message(m, actions) {
    const rows = [
      ["Id", m.id], ["Campaign", m.campaign], ["State", m.state], ["Recipients", (m.recipients || []).join(", ")],
      ["Subject", m.subject], ["Attempts", m.attempts], ["Last reply", m.last_reply || "–"],
      ["Dead reason", m.dead_reason || "–"], ["Message-ID", m.message_id], ["Created", when(m.created_at)],
      ["Updated", when(m.updated_at)], ["Next attempt", when(m.next_attempt_at)],
    ];
    if (m.last_return) {
      const r = m.last_return;
      rows.push(["Returned", `${r.kind} ${r.status || ""} ${r.recipient}: ${r.diagnostic}`]);
    }
    const list = el("dl", { class: "fields" }, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v ?? "–" })]));
    const steps = m.attempt_log || [];
    const log = steps.length
      ? el("ol", { class: "transcript" }, ...steps.map((s) => el("li", {}, el("time", { text: when(s.at) }), ` attempt ${s.attempts}: `, el("strong", { text: s.type }), s.reason ? ` (${s.reason})` : "", s.detail ? ` — ${s.detail}` : "")))
      : el("p", { class: "hint", text: "No attempt in the event log this server has read (a message sent at its first try has only its last reply)." });
    return el("article", { class: "card message", dataset: { id: m.id } }, el("h2", { text: `Message ${m.id.slice(0, 12)}… (${m.state})` }), list, el("h3", { text: "SMTP replies, attempt by attempt" }), log, actions ? el("div", { class: "actions" }, ...actions) : null);
  }

  return { request, el, fill, notice, poll, confirm, number, rate, plural, duration, when, heldBy, message };
})();
