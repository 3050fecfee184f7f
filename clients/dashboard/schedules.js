// The Schedules page: scheduled jobs (newest first, a page at a time, cancellable while
// pending) and the app's crons, both re-read when their system tables change.

import { h, setError, compactValue, formatTime, folded, watchSentinel } from "./util.js";

const PAGE_SIZE = 50;
const MAX_PAGE = 500;
/** A bound on the requests of one refresh, whatever the server's page size. */
const MAX_REFRESH_REQUESTS = 50;
const STATES = ["all", "pending", "inProgress", "success", "failed", "canceled"];

export function mount(root, ctx) {
  let alive = true;

  // --- Layout ---------------------------------------------------------------------------

  const stateFilter = h(
    "select",
    { id: "job-state-filter", "aria-label": "State" },
    ...STATES.map((state) => h("option", { value: state, text: state })),
  );
  const jobsStatus = h("span", { id: "jobs-status", class: "muted" });
  const jobsError = h("p", { id: "jobs-error", class: "error", role: "alert", hidden: true });
  const jobsBody = h("tbody");
  const jobsTable = h(
    "table",
    { id: "jobs", class: "grid" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...["name", "args", "scheduled", "state", "completed", ""].map((label) => h("th", { text: label })),
      ),
    ),
    jobsBody,
  );
  const sentinel = h("div", { class: "sentinel", "aria-hidden": "true" });
  const loadMore = h("button", { id: "load-more", type: "button", text: "Load more", hidden: true });

  const cronsError = h("p", { id: "crons-error", class: "error", role: "alert", hidden: true });
  const cronsBody = h("tbody");
  const cronsTable = h(
    "table",
    { id: "crons", class: "grid" },
    h(
      "thead",
      {},
      h("tr", {}, ...["name", "schedule", "function", "args", "next run", "last job"].map((label) => h("th", { text: label }))),
    ),
    cronsBody,
  );
  const cronsEmpty = h("p", { class: "muted", text: "The app declares no crons.", hidden: true });

  root.append(
    h(
      "div",
      { class: "scroll-page" },
      h("section", { class: "panel" }, h("div", { class: "toolbar" }, h("h2", { text: "Crons" })), cronsError, cronsTable, cronsEmpty),
      h(
        "section",
        { class: "panel" },
        h("div", { class: "toolbar" }, h("h2", { text: "Scheduled jobs" }), h("label", {}, "State ", stateFilter), h("span", { class: "spacer" }), jobsStatus),
        jobsError,
        h("div", { class: "table-wrap" }, jobsTable),
        sentinel,
        // Kept in view at the bottom, so rows loading in never move it from under a click.
        h("div", { class: "load-more-row sticky-bottom" }, loadMore),
      ),
    ),
  );

  // --- Jobs -------------------------------------------------------------------------------

  let view = newView();

  function newView() {
    return { jobs: [], ids: new Set(), cursor: null, isDone: false, requests: 0, failed: false, loading: false };
  }

  async function fetchJobs(cursor, limit) {
    const params = new URLSearchParams({ state: stateFilter.value, limit: String(limit) });
    if (cursor !== null && cursor !== undefined) params.set("cursor", cursor);
    return ctx.api("GET", `/api/dashboard/jobs?${params}`);
  }

  // Loading and refreshing take turns, as on the Data page.
  let busy = false;
  /** false, "auto" (the end came into view) or "asked" (a first page, the button). */
  let wantMore = false;
  let wantRefresh = false;

  async function pump() {
    if (busy || !alive) return;
    busy = true;
    try {
      while (alive) {
        if (wantRefresh) {
          wantRefresh = false;
          if (view.requests > 0) await refreshJobs();
          continue;
        }
        if (wantMore) {
          const asked = wantMore === "asked";
          wantMore = false;
          if (view.isDone || view.failed) continue;
          // The end may have been in view only before the last page came in.
          if (!asked && view.requests > 0 && !more.visible()) continue;
          await loadNext();
          if (!view.isDone && !view.failed && more.visible()) wantMore = "auto";
          continue;
        }
        break;
      }
    } finally {
      busy = false;
      updateStatus();
    }
  }

  async function loadNext() {
    const v = view;
    v.loading = true;
    updateStatus();
    try {
      const answer = await fetchJobs(v.cursor, PAGE_SIZE);
      if (v !== view || !alive) return;
      v.requests++;
      v.cursor = answer.cursor ?? null;
      v.isDone = Boolean(answer.isDone);
      const jobs = (answer.jobs ?? []).filter((job) => !v.ids.has(job.id));
      for (const job of jobs) v.ids.add(job.id);
      v.jobs.push(...jobs);
      jobsBody.append(...jobs.map(jobRow));
      setError(jobsError, "");
    } catch (error) {
      if (v !== view || !alive) return;
      v.failed = true;
      if (error.status !== 401) setError(jobsError, error.message);
    } finally {
      v.loading = false;
    }
  }

  /** Re-reads as many jobs as are shown, in whole pages, and replaces the rows. */
  async function refreshJobs() {
    const v = view;
    const target = Math.max(PAGE_SIZE, Math.ceil(v.jobs.length / PAGE_SIZE) * PAGE_SIZE);
    const jobs = [];
    const ids = new Set();
    let cursor = null;
    let isDone = false;
    let requests = 0;
    try {
      while (jobs.length < target && !isDone && requests < MAX_REFRESH_REQUESTS) {
        const answer = await fetchJobs(cursor, Math.min(MAX_PAGE, target - jobs.length));
        if (v !== view || !alive) return;
        requests++;
        for (const job of answer.jobs ?? []) {
          if (ids.has(job.id)) continue;
          ids.add(job.id);
          jobs.push(job);
        }
        cursor = answer.cursor ?? null;
        isDone = Boolean(answer.isDone);
      }
    } catch (error) {
      if (v === view && alive && error.status !== 401) setError(jobsError, error.message);
      return;
    }
    v.jobs = jobs;
    v.ids = ids;
    v.cursor = cursor;
    v.isDone = isDone;
    v.failed = false;
    setError(jobsError, "");
    jobsBody.replaceChildren(...jobs.map(jobRow));
  }

  function stateText(state) {
    if (!state) return "";
    return state.kind === "failed" && state.error ? `failed: ${state.error}` : String(state.kind ?? "");
  }

  function jobRow(job) {
    const kind = job.state?.kind ?? "";
    const actions = h("td", { class: "actions-cell" });
    if (kind === "pending") {
      const cancel = h("button", { type: "button", class: "cancel", text: "Cancel" });
      cancel.addEventListener("click", () => cancelJob(job, cancel));
      actions.append(cancel);
    }
    const argsText = compactValue(job.args);
    return h(
      "tr",
      { class: `job-row state-${kind}`, dataset: { id: job.id } },
      h("td", { class: "name mono", text: job.name, title: job.cron ? `made by the cron ${job.cron}` : job.id }),
      h("td", { class: "args mono", text: argsText, title: argsText.length > 80 ? argsText : null }),
      h("td", { class: "scheduled", text: formatTime(job.scheduledTime) }),
      h("td", { class: `state state-${kind}`, text: stateText(job.state) }),
      h("td", { class: "completed", text: formatTime(job.completedTime) }),
      actions,
    );
  }

  async function cancelJob(job, button) {
    button.disabled = true;
    try {
      const answer = await ctx.api("POST", "/api/dashboard/jobs/cancel", { id: job.id });
      if (!alive) return;
      setError(jobsError, "");
      // Shown at once; the commit's refresh brings the completion time.
      const updated = { ...job, state: answer.state ?? job.state };
      const row = jobsBody.querySelector(`tr.job-row[data-id="${CSS.escape(job.id)}"]`);
      if (row) row.replaceWith(jobRow(updated));
    } catch (error) {
      if (!alive) return;
      button.disabled = false;
      if (error.status !== 401) setError(jobsError, `Cancelling failed: ${error.message}`);
    }
  }

  function updateStatus() {
    const n = view.jobs.length;
    jobsStatus.textContent =
      view.requests === 0 ? (view.failed ? "" : "loading…") : view.isDone ? `all ${n} shown` : `${n} shown, more below`;
    loadMore.hidden = view.isDone || (view.requests === 0 && !view.failed);
    loadMore.disabled = view.loading;
  }

  function resetJobs() {
    view = newView();
    jobsBody.replaceChildren();
    setError(jobsError, "");
    updateStatus();
    wantMore = "asked";
    pump();
  }

  const more = watchSentinel(sentinel, () => {
    if (view.isDone || view.failed || wantMore) return;
    wantMore = "auto";
    pump();
  });

  loadMore.addEventListener("click", () => {
    view.failed = false;
    wantMore = "asked";
    pump();
  });
  stateFilter.addEventListener("change", resetJobs);

  // --- Crons ------------------------------------------------------------------------------

  function lastJobText(job) {
    if (!job) return "never";
    const when = formatTime(job.completedTime ?? job.scheduledTime);
    return `${stateText(job.state)} · ${when}`;
  }

  const refreshCrons = folded(250, async () => {
    if (!alive) return;
    try {
      const answer = await ctx.api("GET", "/api/dashboard/crons");
      if (!alive) return;
      const crons = Array.isArray(answer.crons) ? answer.crons : [];
      setError(cronsError, "");
      cronsEmpty.hidden = crons.length > 0;
      cronsBody.replaceChildren(
        ...crons.map((cron) => {
          const argsText = compactValue(cron.args);
          return h(
            "tr",
            { class: "cron-row", dataset: { name: cron.name } },
            h("td", { class: "name mono", text: cron.name }),
            h("td", { class: "schedule mono", text: cron.schedule }),
            h("td", { class: "function mono", text: cron.function }),
            h("td", { class: "args mono", text: argsText, title: argsText.length > 80 ? argsText : null }),
            h("td", { class: "next", text: formatTime(cron.nextRunMs) }),
            h("td", { class: `last state-${cron.lastJob?.state?.kind ?? "none"}`, text: lastJobText(cron.lastJob) }),
          );
        }),
      );
    } catch (error) {
      if (alive && error.status !== 401) setError(cronsError, error.message);
    }
  });

  // --- Live -------------------------------------------------------------------------------

  ctx.events.on("change", (tables) => {
    const jobsChanged = tables === null || tables.has("_scheduled_functions");
    if (jobsChanged) {
      wantRefresh = true;
      pump();
    }
    if (jobsChanged || tables.has("_cron_jobs")) refreshCrons();
  });

  resetJobs();
  refreshCrons();

  return () => {
    alive = false;
    more.disconnect();
  };
}
