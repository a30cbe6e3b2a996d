// The suppression list (search, add, remove) and the relays and providers, polled.
"use strict";

(() => {
  const { el, fill, when, number, rate } = Dash;
  let query = "";

  async function loadEntries() {
    const data = query
      ? await Dash.request("GET", `/ui/api/suppressions?q=${encodeURIComponent(query)}`)
      : await Dash.request("GET", "/v1/suppressions?limit=100");
    const note = query ? `Entries starting with “${query}”.` : "The first 100 entries, in address order: search to find others.";
    document.getElementById("entries-note").textContent = note;
    fill(document.querySelector("#entries tbody"), data.entries, (e) => [
      e.address, e.list ?? "every list", e.reason, e.source, when(e.created_at), e.expires_at ? when(e.expires_at) : "never",
      el("td", {}, el("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove ${e.address}`, on: { click: () => remove(e) } })),
    ], "No entry.");
  }

  async function remove(e) {
    const where = e.list ? `the list ${e.list}` : "every list";
    if (!(await Dash.confirm(`Remove ${e.address} from the suppression list of ${where}? 1 entry; it may be mailed again.`, "Remove"))) return;
    try {
      const result = await Dash.request("DELETE", "/v1/suppressions", { addresses: [e.address], list: e.list });
      Dash.notice(`Removed ${result.removed} entry.`, true);
    } catch (error) {
      Dash.notice(`Could not remove ${e.address}: ${error.message}`);
    }
    loadEntries();
  }

  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    query = document.getElementById("s-q").value.trim();
    loadEntries().catch((error) => Dash.notice(error.message));
  });

  document.getElementById("add").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const address = form.elements.address.value.trim();
    const list = form.elements.list.value.trim() || null;
    try {
      await Dash.request("POST", "/v1/suppressions", { addresses: [address], list, reason: form.elements.reason.value, source: "dashboard" });
      Dash.notice(`Added ${address}.`, true);
      form.reset();
    } catch (error) {
      Dash.notice(`Could not add ${address}: ${error.message}`);
    }
    loadEntries();
  });

  Dash.poll(() => Dash.request("GET", "/ui/api/campaigns"), (data) => {
    fill(document.querySelector("#relays tbody"), data.relays, (r) => [r.name, r.state, number(r.sent), number(r.failed), r.reason || "–", when(r.at)], "One relay: its pauses show on the campaigns.");
    fill(document.querySelector("#providers tbody"), data.providers, (p) => [
      p.name, p.rate === null ? "not limited" : rate(p.rate), p.ceiling === null ? "–" : rate(p.ceiling), number(p.sent), number(p.throttled),
      p.suspended_for ? `${p.suspended_for} s` : "no", p.last_reply ? `${p.last_reply} (${when(p.last_reply_at)})` : "–",
    ], "No provider shaped yet (or shaping is off).");
    const limit = data.rate_limit ? `This server's workers send at most ${rate(data.rate_limit)}.` : "This server's workers have no global rate limit.";
    document.getElementById("relays-note").textContent = limit;
    document.getElementById("providers-note").textContent = "As the workers last published them (every few seconds).";
  });
  loadEntries().catch((error) => Dash.notice(error.message));
})();
