// A message by id or recipient address, kept up to date while shown.
"use strict";

(() => {
  const input = document.getElementById("m-q");
  let query = new URLSearchParams(location.search).get("q") || "";
  input.value = query;

  const refresh = Dash.poll(
    async () => (query ? Dash.request("GET", `/ui/api/messages?q=${encodeURIComponent(query)}`) : { messages: null }),
    (data) => {
      const found = document.getElementById("found");
      if (data.messages === null) found.replaceChildren();
      else if (!data.messages.length) found.replaceChildren(Dash.el("p", { class: "card", text: `No message found for “${query}”.` }));
      else found.replaceChildren(...data.messages.map((m) => Dash.message(m)));
    },
  );

  document.getElementById("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    query = input.value.trim();
    history.replaceState(null, "", `?q=${encodeURIComponent(query)}`);
    refresh();
  });
})();
