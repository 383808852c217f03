// Bastion dashboard: the live feed (server-sent events). Plain JS, no library; rows are
// built with textContent, never HTML, so nothing a client sent can run here.
"use strict";

(function () {
  const table = document.getElementById("feed");
  if (!table || !window.EventSource) {
    return;
  }
  const body = table.querySelector("tbody");
  const state = document.getElementById("feed-state");
  const MAX_ROWS = 200;
  const columns = ["time", "status", "decision", "method", "path", "route", "consumer", "client", "latency_ms"];
  const source = new EventSource(table.dataset.stream);

  source.addEventListener("open", function () {
    state.textContent = "Live: new requests appear at the top.";
  });
  source.addEventListener("error", function () {
    // CLOSED: the stream answered with something else than events (the session ended and
    // the sign-in page came back): the browser does not retry then.
    state.textContent = source.readyState === EventSource.CLOSED
      ? "Disconnected: reload the page (your session may have ended)."
      : "Reconnecting…";
  });
  source.addEventListener("record", function (event) {
    const record = JSON.parse(event.data);
    const row = document.createElement("tr");
    row.className = "d-" + record.decision;
    row.dataset.id = record.id;
    for (const name of columns) {
      const cell = document.createElement("td");
      cell.textContent = String(record[name]);
      row.appendChild(cell);
    }
    const why = document.createElement("td");
    why.textContent = record.stage ? record.stage + "/" + record.rule : "";
    row.appendChild(why);
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) {
      body.deleteRow(body.rows.length - 1);
    }
  });
})();
