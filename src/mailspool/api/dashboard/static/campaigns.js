// The campaigns page: a card per campaign, polled.
"use strict";

(() => {
  const { el, number, rate, duration, heldBy } = Dash;
  // the states and returns shown, in this order, when the server reports them
  const SHOWN = ["sent", "queued", "sending", "deferred", "dead", "suppressed", "cancelled"];
  const RETURNS = ["bounced", "complained"];

  function counts(c) {
    const items = [];
    for (const state of SHOWN) {
      if (state in c.counts) items.push([state, c.counts[state]]);
    }
    for (const kind of RETURNS) items.push([kind, c.returns[kind]]);
    return el("dl", { class: "counts" }, ...items.map(([k, v]) => el("div", { class: `count-${k}` }, el("dt", { text: k }), el("dd", { text: number(v) }))));
  }

  function card(c) {
    const done = c.total - c.pending;
    const share = c.total ? done / c.total : 0;
    const href = `/ui/campaigns/${encodeURIComponent(c.campaign)}`;
    const barId = `bar-${c.campaign}`;
    return el(
      "article",
      { class: "card campaign", dataset: { campaign: c.campaign } },
      el("h2", {}, el("a", { href, text: c.campaign })),
      el("div", { class: "progress-line" },
        el("progress", { id: barId, max: 1, value: share, "aria-label": `${c.campaign}: ${Math.round(share * 100)}% final` }),
        el("span", { text: `${number(done)} of ${number(c.total)} final` })),
      counts(c),
      el("dl", { class: "figures" },
        el("div", {}, el("dt", { text: "Send rate" }), el("dd", { class: "rate", text: rate(c.rate_per_s) })),
        el("div", {}, el("dt", { text: "ETA" }), el("dd", { class: "eta", text: duration(c.eta_s) })),
        el("div", {}, el("dt", { text: "Held back by" }), el("dd", { class: "held-by" }, heldBy(c.held_by)))),
    );
  }

  Dash.poll(
    () => Dash.request("GET", "/ui/api/campaigns"),
    (data) => {
      document.getElementById("empty").hidden = data.campaigns.length > 0;
      document.getElementById("campaigns").replaceChildren(...data.campaigns.map(card));
    },
  );
})();
