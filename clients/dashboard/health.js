// The Health page: the server's figures, read every second while the page is shown.

import { h, setError, humanBytes, formatMs, sparkline, drawSparkline } from "./util.js";

const POLL_MS = 1000;

export function mount(root, ctx) {
  let alive = true;
  let timer;

  function card(id, label) {
    const value = h("div", { id, class: "stat-value", text: "—" });
    return { value, element: h("div", { class: "stat-card" }, h("div", { class: "stat-label", text: label }), value) };
  }

  const commits = card("commits-per-second", "commits / s (last second)");
  const totalCommits = card("commits-total", "commits in all");
  const connections = card("connections", "connections");
  const liveQueries = card("live-queries", "live queries");
  const dataSize = card("data-size", "data on disk");
  const chart = sparkline([], { width: 480, height: 64, label: "commits per second, last 60 s" });
  chart.id = "commits-chart";
  const error = h("p", { id: "health-error", class: "error", role: "alert", hidden: true });
  const updated = h("span", { id: "health-updated", class: "muted" });
  const body = h("tbody");
  const table = h(
    "table",
    { id: "function-health", class: "grid" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...["function", "kind", "calls", "errors", "error rate", "p50", "p95", "p99", "calls / s (60 s)"].map((label) =>
          h("th", { text: label }),
        ),
      ),
    ),
    body,
  );
  const empty = h("p", { class: "muted", text: "No function has run since the server started.", hidden: true });
  const nodesBody = h("tbody");
  const nodesTable = h(
    "table",
    { id: "nodes", class: "grid" },
    h("thead", {}, h("tr", {}, ...["node", "role", "address", "lag", "last seen"].map((label) => h("th", { text: label })))),
    nodesBody,
  );
  const leaderLine = h("p", { id: "nodes-leader", class: "muted" });

  root.append(
    h(
      "div",
      { class: "scroll-page" },
      h("div", { class: "toolbar" }, h("h2", { text: "Health" }), h("span", { class: "spacer" }), updated),
      error,
      h(
        "div",
        { class: "stat-cards" },
        commits.element,
        totalCommits.element,
        connections.element,
        liveQueries.element,
        dataSize.element,
      ),
      h("section", { class: "panel" }, h("h3", { text: "Commits per second, last 60 seconds" }), chart),
      h("section", { class: "panel" }, h("h3", { text: "Functions" }), h("div", { class: "table-wrap" }, table), empty),
      h("section", { class: "panel" }, h("h3", { text: "Nodes" }), leaderLine, h("div", { class: "table-wrap" }, nodesTable)),
    ),
  );

  /** Rows by path, updated in place so the table does not flicker every second. */
  const rows = new Map();

  function cells(row) {
    return Object.fromEntries([...row.children].map((cell) => [cell.dataset.col, cell]));
  }

  function functionRow(path) {
    let row = rows.get(path);
    if (row) return row;
    const spark = sparkline([], { width: 120, height: 24, label: `${path}: calls per second` });
    row = h(
      "tr",
      { class: "fn-health", dataset: { path } },
      h("td", { class: "path mono", dataset: { col: "path" }, text: path }),
      h("td", { class: "kind", dataset: { col: "kind" } }),
      h("td", { class: "calls num", dataset: { col: "calls" } }),
      h("td", { class: "errors num", dataset: { col: "errors" } }),
      h("td", { class: "error-rate num", dataset: { col: "errorRate" } }),
      h("td", { class: "p50 num", dataset: { col: "p50" } }),
      h("td", { class: "p95 num", dataset: { col: "p95" } }),
      h("td", { class: "p99 num", dataset: { col: "p99" } }),
      h("td", { class: "spark", dataset: { col: "spark" } }, spark),
    );
    rows.set(path, row);
    return row;
  }

  function percent(rate, calls, errors) {
    // errorRate is a fraction of calls; the counts stand in if it is missing.
    const value = typeof rate === "number" ? rate : calls > 0 ? errors / calls : 0;
    return `${(value * 100).toFixed(value > 0 && value < 0.01 ? 2 : 1)}%`;
  }

  function render(health) {
    const perSecond = health.commits?.perSecond ?? [];
    commits.value.textContent = String(perSecond.length > 0 ? perSecond[perSecond.length - 1] : 0);
    totalCommits.value.textContent = String(health.commits?.total ?? 0);
    connections.value.textContent = String(health.connections ?? 0);
    liveQueries.value.textContent = String(health.liveQueries ?? 0);
    dataSize.value.textContent = humanBytes(health.dataBytes);
    drawSparkline(chart, perSecond);
    updated.textContent = `updated ${new Date(health.nowMs ?? Date.now()).toLocaleTimeString()}`;

    const functions = [...(health.functions ?? [])].sort((a, b) => a.path.localeCompare(b.path));
    const seen = new Set();
    const ordered = functions.map((f) => {
      seen.add(f.path);
      const row = functionRow(f.path);
      const c = cells(row);
      c.kind.textContent = f.kind ?? "";
      c.calls.textContent = String(f.calls ?? 0);
      c.errors.textContent = String(f.errors ?? 0);
      c.errorRate.textContent = percent(f.errorRate, f.calls ?? 0, f.errors ?? 0);
      c.p50.textContent = formatMs(f.p50Ms);
      c.p95.textContent = formatMs(f.p95Ms);
      c.p99.textContent = formatMs(f.p99Ms);
      row.classList.toggle("has-errors", (f.errors ?? 0) > 0);
      drawSparkline(c.spark.firstElementChild, f.perSecond ?? []);
      return row;
    });
    for (const path of [...rows.keys()]) if (!seen.has(path)) rows.delete(path);
    // Only when the set of rows changed: moving nodes every second would lose hover and focus.
    const current = [...body.children];
    if (current.length !== ordered.length || current.some((row, i) => row !== ordered[i])) {
      body.replaceChildren(...ordered);
    }
    empty.hidden = ordered.length > 0;
  }

  /** The deployment's nodes: one row each, this node marked, lag behind the newest commit. */
  function renderNodes(cluster) {
    const nodes = cluster?.nodes ?? [];
    nodesBody.replaceChildren(
      ...nodes.map((node) =>
        h(
          "tr",
          { class: `node role-${node.role}`, dataset: { node: node.id ?? "single" } },
          h("td", { class: "mono", text: node.id ? `${node.id}${node.self ? " (this node)" : ""}` : "this server" }),
          h("td", { class: "role", text: node.role }),
          h("td", { class: "mono", text: node.address ?? "" }),
          h("td", { class: "lag num", text: formatMs(node.lagMs) }),
          h("td", { class: "num", text: `${(node.seenSecondsAgo ?? 0).toFixed(1)} s ago` }),
        ),
      ),
    );
    const leader = cluster?.leader;
    leaderLine.textContent = leader
      ? `Leader: ${leader.id} (term ${leader.term}); it commits, the others follow its log.`
      : cluster?.self
        ? "No node holds the writer lease right now."
        : "A single server: it commits and serves everything.";
  }

  async function poll() {
    if (!alive) return;
    try {
      const health = await ctx.api("GET", "/api/dashboard/health");
      if (!alive) return;
      setError(error, "");
      render(health);
      renderNodes(health.cluster);
    } catch (failure) {
      if (!alive || failure.status === 401) return;
      setError(error, `Reading health failed: ${failure.message}`);
    }
    // The next read waits for this one: a slow server is not piled up on.
    if (alive) timer = setTimeout(poll, POLL_MS);
  }

  poll();

  return () => {
    alive = false;
    clearTimeout(timer);
  };
}
