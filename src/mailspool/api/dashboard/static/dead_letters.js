// Dead letters: filter (campaign, reason, time), show one with its replies, retry or
// purge one or all those shown (POST /v1/dead-letters/retry|purge with their ids).
"use strict";

(() => {
  const { el, fill, when, plural } = Dash;
  const LIMIT = 500;
  const form = document.getElementById("filter");
  const fields = ["campaign", "reason", "since"];
  let shown = { dead_letters: [], more: false };

  const params = new URLSearchParams(location.search);
  const campaignSelect = document.getElementById("f-campaign");
  for (const f of fields) {
    const value = params.get(f);
    if (value && f === "campaign") campaignSelect.append(el("option", { value, text: value }));
    if (value) form.elements[f].value = value;
  }

  function filter() {
    const out = {};
    for (const f of fields) if (form.elements[f].value) out[f] = form.elements[f].value;
    return out;
  }

  function describe() {
    const f = filter();
    const parts = Object.entries(f).map(([k, v]) => `${k} ${v}`);
    return parts.length ? ` (${parts.join(", ")})` : "";
  }

  async function campaigns() {
    const data = await Dash.request("GET", "/ui/api/campaigns");
    const chosen = campaignSelect.value;
    const names = data.campaigns.map((c) => c.campaign);
    if (chosen && !names.includes(chosen)) names.push(chosen);
    campaignSelect.replaceChildren(el("option", { value: "", text: "Any campaign" }), ...names.map((n) => el("option", { value: n, text: n })));
    campaignSelect.value = chosen;
  }

  async function act(action, ids, question) {
    const verb = action === "retry" ? "Retry" : "Purge";
    if (!ids.length || !(await Dash.confirm(question, verb))) return;
    try {
      const result = await Dash.request("POST", `/v1/dead-letters/${action}`, { ids });
      const n = result[action];
      Dash.notice(`${action === "retry" ? "Queued again" : "Purged"}: ${plural(n, "dead letter")}.`, true);
      document.getElementById("detail").hidden = true;
    } catch (error) {
      Dash.notice(`${verb} failed: ${error.message}`);
    }
    refresh();
  }

  async function show(letter) {
    const section = document.getElementById("detail");
    try {
      const data = await Dash.request("GET", `/ui/api/messages?q=${encodeURIComponent(letter.id)}`);
      const m = data.messages[0];
      if (!m) throw new Error("it is gone");
      const actions = [
        el("button", { type: "button", text: "Retry", on: { click: () => act("retry", [m.id], `Retry the dead letter to ${m.recipients.join(", ")}? 1 message is queued again.`) } }),
        el("button", { type: "button", class: "danger", text: "Purge", on: { click: () => act("purge", [m.id], `Purge the dead letter to ${m.recipients.join(", ")}? 1 message is deleted for good.`) } }),
      ];
      document.getElementById("detail-body").replaceChildren(Dash.message(m, actions));
      section.hidden = false;
      section.scrollIntoView({ block: "nearest" });
    } catch (error) {
      Dash.notice(`Could not show ${letter.id}: ${error.message}`);
    }
  }

  function render(data) {
    shown = data;
    const rows = [...data.dead_letters].reverse(); // newest first
    const n = rows.length;
    document.getElementById("count").textContent = data.more ? `(the first ${n}; more match)` : `(${n})`;
    document.getElementById("retry-all").textContent = `Retry all ${n} shown`;
    document.getElementById("purge-all").textContent = `Purge all ${n} shown`;
    for (const id of ["retry-all", "purge-all"]) document.getElementById(id).disabled = n === 0;
    fill(document.querySelector("#letters tbody"), rows, (d) => {
      const to = d.recipients.join(", ");
      return [
        when(d.updated_at), d.campaign, to, d.reason, d.last_reply,
        el("td", { class: "row-actions" },
          el("button", { type: "button", text: "Show", "aria-label": `Show the dead letter to ${to}`, on: { click: () => show(d) } }),
          el("button", { type: "button", text: "Retry", "aria-label": `Retry the dead letter to ${to}`, on: { click: () => act("retry", [d.id], `Retry the dead letter to ${to}? 1 message is queued again.`) } }),
          el("button", { type: "button", class: "danger", text: "Purge", "aria-label": `Purge the dead letter to ${to}`, on: { click: () => act("purge", [d.id], `Purge the dead letter to ${to}? 1 message is deleted for good.`) } })),
      ];
    }, "No dead letter matches.");
  }

  const refresh = Dash.poll(() => {
    const query = new URLSearchParams({ ...filter(), limit: String(LIMIT) });
    return Dash.request("GET", `/v1/dead-letters?${query}`);
  }, render);

  form.addEventListener("change", () => {
    const query = new URLSearchParams(filter()).toString();
    history.replaceState(null, "", query ? `?${query}` : location.pathname);
    refresh();
  });
  const ids = () => shown.dead_letters.map((d) => d.id);
  document.getElementById("retry-all").addEventListener("click", () => act("retry", ids(), `Retry the ${plural(ids().length, "dead letter")} shown${describe()}? They are queued again.`));
  document.getElementById("purge-all").addEventListener("click", () => act("purge", ids(), `Purge the ${plural(ids().length, "dead letter")} shown${describe()}? They are deleted for good.`));
  campaigns().catch((error) => Dash.notice(`Could not list the campaigns: ${error.message}`));
})();
