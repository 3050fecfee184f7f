// The Logs page: function executions from the app's events stream, newest first, with
// filters and a pause that holds new rows back while the operator reads.

import { h, formatClock, formatTime, formatMs, debounce } from "./util.js";

/** Rows kept, shown or waiting; the app keeps the same number of executions. */
const MAX_ROWS = 2000;

export function mount(root, ctx) {
  // The page's own list (oldest first): the app's executions when it opened, then new ones.
  let shown = ctx.executions().slice(-MAX_ROWS);
  let waiting = [];
  let paused = false;
  let skipped = 0;
  const paths = new Set(shown.map((e) => e.path));

  const functionFilter = h(
    "select",
    { id: "log-filter-function", "aria-label": "Function" },
    h("option", { value: "", text: "All functions" }),
  );
  const outcomeFilter = h(
    "select",
    { id: "log-filter-outcome", "aria-label": "Outcome" },
    h("option", { value: "all", text: "all" }),
    h("option", { value: "success", text: "success" }),
    h("option", { value: "error", text: "error" }),
  );
  const textFilter = h("input", {
    id: "log-filter-text",
    type: "search",
    placeholder: "Search path, log lines, errors",
    "aria-label": "Search",
    spellcheck: "false",
  });
  const pauseButton = h("button", { id: "log-pause", type: "button", text: "Pause" });
  const pausedCount = h("span", { id: "log-paused-count", class: "muted", hidden: true });
  const shownCount = h("span", { id: "log-shown-count", class: "muted" });
  const skippedNote = h("p", { id: "log-skipped", class: "warning", hidden: true });
  const empty = h("p", { id: "logs-empty", class: "muted", hidden: true });
  const list = h("div", { id: "logs", class: "log-list", role: "log" });

  root.append(
    h(
      "div",
      { class: "logs-layout" },
      h(
        "div",
        { class: "toolbar" },
        h("h2", { text: "Logs" }),
        functionFilter,
        outcomeFilter,
        textFilter,
        pauseButton,
        pausedCount,
        h("span", { class: "spacer" }),
        shownCount,
      ),
      skippedNote,
      h(
        "div",
        { class: "log-head", "aria-hidden": "true" },
        h("span", { text: "time" }),
        h("span", { text: "function" }),
        h("span", { text: "kind" }),
        h("span", { text: "duration" }),
        h("span", { text: "outcome" }),
      ),
      empty,
      list,
    ),
  );

  function matches(e) {
    if (functionFilter.value && e.path !== functionFilter.value) return false;
    if (outcomeFilter.value !== "all" && e.outcome !== outcomeFilter.value) return false;
    const needle = textFilter.value.trim().toLowerCase();
    if (needle) {
      const haystack = [e.path, e.error ?? "", ...(e.logLines ?? [])].join("\n").toLowerCase();
      if (!haystack.includes(needle)) return false;
    }
    return true;
  }

  function rowFor(e) {
    const outcome = e.outcome === "error" ? "error" : "success";
    const lines = h("div", { class: "lines mono" });
    if (e.error) lines.append(h("div", { class: "error-text", text: e.error }));
    for (const line of e.logLines ?? []) {
      const level = /^\[(LOG|INFO|WARN|ERROR|DEBUG)\]/.exec(line)?.[1]?.toLowerCase() ?? "log";
      lines.append(h("div", { class: `line level-${level}`, text: line }));
    }
    return h(
      "div",
      { class: `log-row ${outcome}`, dataset: { path: e.path, outcome } },
      h("span", { class: "time mono", text: formatClock(e.startedMs), title: formatTime(e.startedMs) }),
      h("span", { class: "path mono", text: e.path, title: e.path }),
      h("span", { class: "kind", text: e.kind ?? "" }),
      h("span", { class: "duration mono", text: formatMs(e.durationMs) }),
      h("span", { class: `outcome badge ${outcome}`, text: outcome }),
      lines,
    );
  }

  function render() {
    const rows = [];
    for (let i = shown.length - 1; i >= 0; i--) {
      if (matches(shown[i])) rows.push(rowFor(shown[i]));
    }
    list.replaceChildren(...rows);
    updateCounts();
  }

  function updateCounts() {
    const count = list.childElementCount;
    shownCount.textContent = `${count} shown`;
    empty.hidden = count > 0;
    empty.textContent = shown.length === 0 ? "No executions yet." : "No execution matches the filters.";
    pausedCount.hidden = !paused;
    pausedCount.textContent = `${waiting.length} waiting`;
  }

  function updatePathOptions() {
    const current = functionFilter.value;
    const options = [...paths].sort().map((p) => h("option", { value: p, text: p }));
    functionFilter.replaceChildren(h("option", { value: "", text: "All functions" }), ...options);
    functionFilter.value = paths.has(current) ? current : "";
  }

  function trim() {
    if (shown.length > MAX_ROWS) shown = shown.slice(-MAX_ROWS);
    while (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
  }

  ctx.events.on("execution", (e) => {
    if (!paths.has(e.path)) {
      paths.add(e.path);
      updatePathOptions();
    }
    if (paused) {
      waiting.push(e);
      if (waiting.length > MAX_ROWS) waiting = waiting.slice(-MAX_ROWS);
      updateCounts();
      return;
    }
    shown.push(e);
    if (matches(e)) list.prepend(rowFor(e));
    trim();
    updateCounts();
  });

  ctx.events.on("skipped", (message) => {
    if (message.what !== "executions") return;
    skipped += message.count ?? 0;
    skippedNote.hidden = false;
    skippedNote.textContent = `${skipped} executions were not received: the stream fell behind.`;
  });

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.classList.toggle("active", paused);
    if (!paused) {
      shown.push(...waiting);
      waiting = [];
      trim();
      render();
    } else {
      updateCounts();
    }
  });

  functionFilter.addEventListener("change", render);
  outcomeFilter.addEventListener("change", render);
  // Re-rendering 2,000 rows per keystroke would lag the typing.
  const renderSoon = debounce(render, 120);
  textFilter.addEventListener("input", renderSoon);

  updatePathOptions();
  render();

  return () => renderSoon.cancel();
}
