// One campaign: progress, counts, rate and its chart (drawn here as inline SVG), by domain, latest deferrals and
// dead letters, and pause, resume and cancel (POST /v1/campaigns/{name}/...).
"use strict";

(() => {
  const { el, fill, number, rate, duration, when, heldBy } = Dash;
  const name = document.getElementById("campaign").dataset.campaign;
  const path = encodeURIComponent(name);
  const SHOWN = ["sent", "queued", "sending", "deferred", "dead", "suppressed", "cancelled"];
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 600;
  const HEIGHT = 160;
  const WINDOW = 300; // seconds shown
  const BIN = 2; // seconds a point
  let state = null;

  document.getElementById("deaths-link").href = `/ui/dead-letters?campaign=${path}`;

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Final jobs a second over the last WINDOW seconds, from the server's series
  // ([second, jobs] from the job events), BIN seconds a point.
  function chart(series, now) {
    const box = document.getElementById("chart");
    const end = Math.floor(now);
    const start = end - WINDOW;
    const bins = new Array(WINDOW / BIN).fill(0);
    for (const [second, n] of series) {
      const i = Math.floor((second - start) / BIN);
      if (i >= 0 && i < bins.length) bins[i] += n / BIN;
    }
    const top = Math.max(1, ...bins) * 1.15;
    const x = (i) => 40 + (i / (bins.length - 1)) * (WIDTH - 50);
    const y = (r) => HEIGHT - 20 - (r / top) * (HEIGHT - 30);
    const parts = [];
    for (const f of [0, 0.5, 1]) {
      parts.push(svg("line", { x1: 40, x2: WIDTH - 10, y1: y(top * f), y2: y(top * f), class: "grid" }));
      parts.push(svg("text", { x: 36, y: y(top * f) + 4, "text-anchor": "end", class: "axis" }, (top * f).toFixed(top < 10 ? 1 : 0)));
    }
    parts.push(svg("text", { x: WIDTH - 10, y: HEIGHT - 4, "text-anchor": "end", class: "axis" }, "now"));
    parts.push(svg("text", { x: 40, y: HEIGHT - 4, class: "axis" }, `${WINDOW / 60} min ago`));
    const line = bins.map((r, i) => `${x(i).toFixed(1)},${y(r).toFixed(1)}`).join(" ");
    parts.push(svg("polyline", { points: line, class: "rate-line" }));
    box.replaceChildren(...parts);
  }

  function render(c) {
    state = c;
    const done = c.total - c.pending;
    const bar = document.getElementById("progress");
    bar.value = c.total ? done / c.total : 0;
    document.getElementById("progress-text").textContent = `${number(done)} of ${number(c.total)} final (${number(c.pending)} pending)`;
    const items = SHOWN.filter((s) => s in c.counts).map((s) => [s, c.counts[s]]);
    items.push(["bounced", c.returns.bounced], ["complained", c.returns.complained]);
    document.getElementById("counts").replaceChildren(...items.map(([k, v]) => el("div", { class: `count-${k}` }, el("dt", { text: k }), el("dd", { text: number(v) }))));
    document.getElementById("rate").textContent = rate(c.rate_per_s);
    chart(c.series, c.now);
    document.getElementById("eta").textContent = duration(c.eta_s);
    document.getElementById("held").replaceChildren(heldBy(c.held_by));
    fill(document.querySelector("#domains tbody"), c.domains, (d) => [d.domain, number(d.sent || 0), number(d.deferred || 0), number(d.dead || 0), number(d.suppressed || 0), number((d.bounced || 0) + (d.soft_bounced || 0)), number(d.complained || 0)], "No delivery seen yet.");
    fill(document.querySelector("#deferrals tbody"), c.deferrals, (s) => [when(s.at), s.recipient, s.attempts, s.detail], "No deferral seen.");
    fill(document.querySelector("#deaths tbody"), c.deaths, (s) => [when(s.at), s.recipient, s.reason, s.detail], "No dead letter seen.");
    document.getElementById("digest-note").textContent = c.caught_up
      ? `From the job events (${number(c.events_read)} read).`
      : `Reading the job events: ${number(c.events_read)} so far.`;
    const cancelled = c.state === "cancelled";
    const paused = c.state === "paused";
    document.getElementById("pause").disabled = cancelled || paused || c.pending === 0;
    document.getElementById("resume").disabled = cancelled || !paused;
    document.getElementById("cancel").disabled = cancelled || c.pending === 0;
  }

  const refresh = Dash.poll(() => Dash.request("GET", `/ui/api/campaigns/${path}`), render);

  async function act(action, question, label) {
    if (!(await Dash.confirm(question, label))) return;
    try {
      await Dash.request("POST", `/v1/campaigns/${path}/${action}`, {});
      Dash.notice(`Campaign ${name}: ${action} done.`, true);
    } catch (error) {
      const why = error.status === 404 || error.status === 405 ? "this server cannot do that yet" : error.message;
      Dash.notice(`Could not ${action} ${name}: ${why}`);
    }
    refresh();
  }

  const pending = () => number(state ? state.pending : 0);
  document.getElementById("pause").addEventListener("click", () => act("pause", `Pause ${name}? Its ${pending()} pending messages wait until it is resumed.`, "Pause"));
  document.getElementById("resume").addEventListener("click", () => act("resume", `Resume ${name}? Its ${pending()} pending messages are sent again.`, "Resume"));
  document.getElementById("cancel").addEventListener("click", () => act("cancel", `Cancel ${name}? Its ${pending()} pending messages will never be sent. This cannot be undone.`, "Cancel campaign"));
})();
