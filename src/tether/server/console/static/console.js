// tether console: live updates without a reload, and confirmations. No libraries.
"use strict";

// A tbody with data-live="<url>" is refetched every 2 s (the task list's first page).
function follow(tbody) {
  const url = tbody.dataset.live;
  async function tick() {
    try {
      const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (r.redirected || r.status === 401) { location.reload(); return; }
      if (r.ok) {
        const seen = new Set([...tbody.querySelectorAll("tr[data-task]")].map((tr) => tr.dataset.task));
        tbody.innerHTML = await r.text();
        for (const tr of tbody.querySelectorAll("tr[data-task]")) {
          if (seen.size && !seen.has(tr.dataset.task)) tr.classList.add("fresh");
        }
      }
    } catch (e) { /* the server is restarting: try again at the next tick */ }
    setTimeout(tick, 2000);
  }
  setTimeout(tick, 2000);
}

// A tbody with data-stream="<url>" appends the task's events as they come (SSE).
function stream(tbody) {
  const source = new EventSource(tbody.dataset.stream + "?after=" + (tbody.dataset.last || "0"));
  const status = document.getElementById("task-status");
  function add(ev) {
    const d = JSON.parse(ev.data);
    const tr = document.createElement("tr");
    tr.className = "fresh";
    const at = new Date(d.at * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
    for (const v of [d.seq, at, d.event, d.step === null ? "" : d.step, JSON.stringify(d.data)]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
    if (status && d.event && d.event.startsWith("task.")) {
      const name = d.event.slice(5);
      const box = document.getElementById("waiting");  // answered: its forms are stale now
      if (box && ["woke", "started", "recovered", "completed", "failed", "cancelled"].includes(name)) {
        box.remove();
      }
      if (["completed", "failed", "cancelled", "started", "recovered"].includes(name)) {
        const shown = name === "started" || name === "recovered" ? "running" : name;
        status.innerHTML = "";
        const b = document.createElement("span");
        b.className = "badge st-" + shown;
        b.textContent = shown;
        status.appendChild(b);
      }
    }
  }
  source.onmessage = add;
  const names = ["task.submitted", "task.started", "task.recovered", "task.completed", "task.failed",
    "task.cancelled", "task.released", "step.started", "step.completed", "step.retrying", "step.failed",
    "step.stuck", "lease.lost", "context.pressure", "context.compacted", "output.truncated",
    "task.waiting", "task.woke", "signal.received", "tool.approval_requested"];
  for (const n of names) source.addEventListener(n, add);
  source.addEventListener("stream.end", () => source.close());
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("tbody[data-live]").forEach(follow);
  document.querySelectorAll("tbody[data-stream]").forEach(stream);
  document.querySelectorAll("form[data-confirm]").forEach((f) =>
    f.addEventListener("submit", (e) => { if (!confirm(f.dataset.confirm)) e.preventDefault(); }));
});
