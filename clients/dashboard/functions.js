// The Functions page: every deployed function by module, its schemas, and a runner that calls
// it over the WebSocket with the admin key, optionally acting as a user. A query's result
// stays live; mutations and actions run once per click.

import { Client, decodeValue, encodeValue } from "/api/client.js";
import {
  h,
  setError,
  prettyJson,
  isPlainObject,
  typeLines,
  typeText,
  objectFields,
  formatMs,
  debounce,
  encodeRoute,
} from "./util.js";

/** Filled in when an acting-as identity leaves it out: the server needs all three fields. */
const DEFAULT_ISSUER = "dashboard";
const SIMPLE_KINDS = ["string", "float64", "int64", "boolean"];

export function mount(root, ctx) {
  let alive = true;
  let functions = [];
  let loaded = false;
  let path = ctx.route || null;
  /** The shown function's description, or null. */
  let fn = null;

  // --- Layout ---------------------------------------------------------------------------

  const search = h("input", {
    id: "fn-search",
    type: "search",
    placeholder: "Search functions",
    "aria-label": "Search functions",
    spellcheck: "false",
  });
  const list = h("div", { id: "functions", class: "function-list" });
  const listError = h("p", { id: "functions-error", class: "error", role: "alert", hidden: true });
  const empty = h("p", { id: "fn-empty", class: "muted", text: "Select a function." });

  const fnPath = h("h2", { id: "fn-path", class: "mono" });
  const fnKind = h("span", { id: "fn-kind", class: "badge kind" });
  const fnVisibility = h("span", { id: "fn-visibility", class: "badge" });
  const argsSchema = h("pre", { id: "fn-args-schema", class: "schema-text" });
  const returnsSchema = h("pre", { id: "fn-returns-schema", class: "schema-text" });

  const argsForm = h("div", { id: "args-form", class: "args-form" });
  const argsJson = h("textarea", { id: "args-json", rows: "6", spellcheck: "false", "aria-label": "Arguments as wire JSON" });
  const argsError = h("p", { id: "args-error", class: "error", role: "alert", hidden: true });
  const actingAs = h("textarea", {
    id: "acting-as",
    rows: "3",
    spellcheck: "false",
    placeholder: '{"subject": "user-1", "name": "Ann"}',
    "aria-label": "Identity to act as (JSON)",
  });
  const actingAsError = h("p", { id: "acting-as-error", class: "error", role: "alert", hidden: true });
  const runButton = h("button", { id: "run", type: "button", class: "primary", text: "Run" });
  const stopButton = h("button", { id: "run-stop", type: "button", text: "Stop", hidden: true });
  const runStatus = h("span", { id: "run-status", class: "run-status" });
  const runDuration = h("span", { id: "run-duration", class: "muted" });
  const runConnection = h("span", { id: "runner-connection", class: "muted" });
  const runResult = h("pre", { id: "run-result", class: "result" });
  const runError = h("pre", { id: "run-error", class: "error", hidden: true });
  const runLogs = h("ul", { id: "run-logs", class: "log-lines mono" });
  const httpNote = h("p", {
    id: "fn-http-note",
    class: "muted",
    hidden: true,
    text: "HTTP actions answer requests under /http/; they cannot be run from here.",
  });

  const runner = h(
    "div",
    { id: "runner", class: "runner" },
    h("h3", { text: "Run" }),
    argsForm,
    h("label", { class: "block", for: "args-json" }, "Arguments (wire JSON)"),
    argsJson,
    argsError,
    h("label", { class: "block", for: "acting-as" }, "Act as (optional identity, JSON)"),
    actingAs,
    h("p", {
      class: "help",
      text:
        `Empty: the admin, with no user identity. "issuer" defaults to "${DEFAULT_ISSUER}" and ` +
        '"tokenIdentifier" to issuer|subject.',
    }),
    actingAsError,
    h("div", { class: "run-bar" }, runButton, stopButton, runStatus, runDuration, h("span", { class: "spacer" }), runConnection),
    h("h3", { text: "Result" }),
    runResult,
    runError,
    h("h3", { text: "Log lines" }),
    runLogs,
  );

  const detail = h(
    "div",
    { id: "fn-detail", hidden: true },
    fnPath,
    h("div", { class: "fn-meta" }, fnKind, fnVisibility),
    h("h3", { text: "Arguments" }),
    argsSchema,
    h("h3", { text: "Returns" }),
    returnsSchema,
    httpNote,
    runner,
  );

  root.append(
    h(
      "div",
      { class: "functions-layout" },
      h("aside", { class: "fn-side" }, h("h2", { text: "Functions" }), search, listError, list),
      h("div", { class: "fn-main" }, empty, detail),
    ),
  );

  // --- The list ---------------------------------------------------------------------------

  function moduleOf(fnPath) {
    const colon = fnPath.lastIndexOf(":");
    return colon < 0 ? fnPath : fnPath.slice(0, colon);
  }

  function nameOf(fnPath) {
    const colon = fnPath.lastIndexOf(":");
    return colon < 0 ? "default" : fnPath.slice(colon + 1);
  }

  async function loadFunctions() {
    try {
      const answer = await ctx.api("GET", "/api/functions");
      if (!alive) return;
      functions = Array.isArray(answer.functions) ? answer.functions : [];
      loaded = true;
      setError(listError, "");
      renderList();
      showFunction(path, { force: true });
    } catch (error) {
      if (alive && error.status !== 401) setError(listError, `Listing functions failed: ${error.message}`);
    }
  }

  function renderList() {
    const needle = search.value.trim().toLowerCase();
    const groups = new Map();
    for (const f of functions) {
      if (needle && !f.path.toLowerCase().includes(needle)) continue;
      const module = moduleOf(f.path);
      if (!groups.has(module)) groups.set(module, []);
      groups.get(module).push(f);
    }
    const modules = [...groups.keys()].sort();
    list.replaceChildren(
      ...modules.map((module) =>
        h(
          "div",
          { class: "module-group", dataset: { module } },
          h("h3", { class: "module-name mono", text: module }),
          h(
            "ul",
            {},
            ...groups
              .get(module)
              .sort((a, b) => a.path.localeCompare(b.path))
              .map((f) =>
                h(
                  "li",
                  { class: `function-item${f.path === path ? " selected" : ""}`, dataset: { path: f.path } },
                  h(
                    "a",
                    { href: `#/functions/${encodeRoute(f.path)}`, title: f.path },
                    h("span", { class: "fn-name mono", text: nameOf(f.path) }),
                    h("span", { class: `badge kind kind-${f.kind}`, text: f.kind }),
                    f.visibility === "internal" ? h("span", { class: "badge internal", text: "internal" }) : null,
                  ),
                ),
              ),
          ),
        ),
      ),
    );
    if (modules.length === 0) {
      list.append(h("p", { class: "muted", text: loaded && !needle ? "No functions deployed." : "No match." }));
    }
  }

  search.addEventListener("input", renderList);

  // --- The detail -------------------------------------------------------------------------

  function showFunction(nextPath, { force = false } = {}) {
    if (!force && nextPath === path && fn !== null) return;
    path = nextPath || null;
    for (const item of list.querySelectorAll(".function-item")) {
      item.classList.toggle("selected", item.dataset.path === path);
    }
    const next = path ? functions.find((f) => f.path === path) ?? null : null;
    // A redeploy that kept the function keeps the runner (and a live query) as it is.
    if (force && next && fn && JSON.stringify(next) === JSON.stringify(fn)) return;
    stopQuery();
    runToken++;
    fn = next;
    if (fn === null) {
      detail.hidden = true;
      empty.hidden = false;
      empty.textContent = !path ? "Select a function." : loaded ? `No function ${path} is deployed.` : "Loading…";
      return;
    }
    empty.hidden = true;
    detail.hidden = false;
    fnPath.textContent = fn.path;
    fnKind.textContent = fn.kind;
    fnKind.className = `badge kind kind-${fn.kind}`;
    fnVisibility.textContent = fn.visibility;
    fnVisibility.className = `badge${fn.visibility === "internal" ? " internal" : ""}`;
    argsSchema.textContent = typeLines(fn.args).join("\n");
    returnsSchema.textContent = typeLines(fn.returns).join("\n");
    const runnable = fn.kind !== "httpAction";
    httpNote.hidden = runnable;
    runner.hidden = !runnable;
    buildForm();
    clearOutcome();
    setStatus("");
  }

  // --- The argument form, kept in step with the JSON --------------------------------------

  /** The arguments as wire JSON: the one truth both the form and the JSON text show. */
  let argsWire = {};
  /** @type {{name: string, type: any, optional: boolean, kind: string, input: HTMLElement}[]} */
  let fields = [];
  const fieldProblems = new Map();
  let jsonProblem = "";

  function buildForm() {
    argsWire = {};
    fields = [];
    fieldProblems.clear();
    jsonProblem = "";
    const rows = [];
    for (const [name, type] of objectFields(fn.args)) {
      const optional = type?.type === "optional";
      const inner = optional ? type.inner : type;
      const kind = SIMPLE_KINDS.includes(inner?.type) ? inner.type : "json";
      const input = makeInput(name, kind, inner);
      const field = { name, type, optional, kind, input };
      fields.push(field);
      if (kind === "boolean" && !optional) argsWire[name] = false;
      input.addEventListener(kind === "boolean" ? "change" : "input", () => fieldChanged(field));
      rows.push(
        h(
          "label",
          { class: `arg-field arg-${kind}` },
          h("span", { class: "arg-name mono", text: name }),
          h("span", { class: "arg-type mono", text: typeText(type) }),
          input,
        ),
      );
    }
    argsForm.replaceChildren(...rows);
    argsForm.hidden = rows.length === 0;
    argsJson.value = prettyJson(argsWire);
    showArgsProblems();
  }

  function makeInput(name, kind, inner) {
    const dataset = { arg: name };
    switch (kind) {
      case "string":
        return h("input", { type: "text", dataset, spellcheck: "false", autocomplete: "off" });
      case "float64":
        return h("input", { type: "number", step: "any", dataset });
      case "int64":
        return h("input", { type: "text", inputmode: "numeric", placeholder: "an integer, e.g. 42", dataset, autocomplete: "off" });
      case "boolean":
        return h("input", { type: "checkbox", dataset });
      default:
        return h("textarea", {
          rows: "2",
          dataset,
          spellcheck: "false",
          placeholder: `wire JSON: ${typeText(inner)}`,
        });
    }
  }

  /** A field's value as wire JSON (undefined: left out), or the reason it has none. */
  function readField(field) {
    const input = field.input;
    const text = field.kind === "boolean" ? "" : input.value.trim();
    switch (field.kind) {
      case "string":
        // An empty optional string is left out; a required one is sent as "".
        return { value: input.value === "" && field.optional ? undefined : input.value };
      case "float64": {
        if (text === "") return { value: undefined };
        const number = Number(text);
        if (Number.isNaN(number)) return { problem: `${field.name}: not a number` };
        return { value: encodeValue(number) };
      }
      case "int64": {
        if (text === "") return { value: undefined };
        try {
          return { value: encodeValue(BigInt(text)) };
        } catch {
          return { problem: `${field.name}: not a 64-bit integer` };
        }
      }
      case "boolean":
        return { value: input.checked ? true : field.optional ? undefined : false };
      default: {
        if (text === "") return { value: undefined };
        try {
          return { value: JSON.parse(text) };
        } catch (error) {
          return { problem: `${field.name}: not valid JSON (${error.message})` };
        }
      }
    }
  }

  function writeField(field, value) {
    const input = field.input;
    switch (field.kind) {
      case "string":
        input.value = typeof value === "string" ? value : "";
        break;
      case "float64": {
        let number = value;
        try {
          number = decodeValue(value);
        } catch {
          number = undefined;
        }
        input.value = typeof number === "number" && Number.isFinite(number) ? String(number) : "";
        break;
      }
      case "int64": {
        let big;
        try {
          big = decodeValue(value);
        } catch {
          big = undefined;
        }
        input.value = typeof big === "bigint" ? String(big) : "";
        break;
      }
      case "boolean":
        input.checked = value === true;
        break;
      default:
        input.value = value === undefined ? "" : JSON.stringify(value);
    }
  }

  /** The arguments with the schema's fields first, in its order. */
  function ordered(args) {
    const result = {};
    for (const field of fields) if (args[field.name] !== undefined) result[field.name] = args[field.name];
    for (const [key, value] of Object.entries(args)) if (!(key in result)) result[key] = value;
    return result;
  }

  function fieldChanged(field) {
    const read = readField(field);
    if (read.problem) {
      fieldProblems.set(field.name, read.problem);
    } else {
      fieldProblems.delete(field.name);
      const next = { ...argsWire };
      if (read.value === undefined) delete next[field.name];
      else next[field.name] = read.value;
      argsWire = ordered(next);
      jsonProblem = "";
      argsJson.value = prettyJson(argsWire);
    }
    showArgsProblems();
    argsChanged();
  }

  argsJson.addEventListener("input", () => {
    let parsed;
    try {
      parsed = JSON.parse(argsJson.value);
    } catch (error) {
      jsonProblem = `arguments: not valid JSON (${error.message})`;
      showArgsProblems();
      return;
    }
    if (!isPlainObject(parsed)) {
      jsonProblem = "arguments: a JSON object of the function's arguments";
      showArgsProblems();
      return;
    }
    jsonProblem = "";
    argsWire = parsed;
    fieldProblems.clear();
    for (const field of fields) writeField(field, parsed[field.name]);
    showArgsProblems();
    argsChanged();
  });

  function argsProblem() {
    return [jsonProblem, ...fieldProblems.values()].filter(Boolean).join("; ");
  }

  function showArgsProblems() {
    setError(argsError, argsProblem());
  }

  /** The arguments as the client takes them (BigInt, Uint8Array), or null when invalid. */
  function currentArgs() {
    const problem = argsProblem();
    if (problem) {
      setError(argsError, problem);
      return null;
    }
    try {
      return decodeValue(argsWire);
    } catch (error) {
      setError(argsError, `arguments: ${error.message}`);
      return null;
    }
  }

  // A live query follows its arguments, once typing pauses.
  const argsChanged = debounce(() => {
    if (alive && liveQuery) runQuery();
  }, 300);

  // --- Acting as, and the client ----------------------------------------------------------

  let client = null;
  let clientIdentity = null;
  let stopWatching = null;

  /** The identity to act as (undefined: none), or null when the text is not one. */
  function readActingAs() {
    const text = actingAs.value.trim();
    if (text === "") {
      setError(actingAsError, "");
      return undefined;
    }
    let identity;
    try {
      identity = JSON.parse(text);
    } catch (error) {
      setError(actingAsError, `Not valid JSON: ${error.message}`);
      return null;
    }
    if (!isPlainObject(identity) || typeof identity.subject !== "string") {
      setError(actingAsError, 'An identity is a JSON object with a string "subject", e.g. {"subject": "user-1"}.');
      return null;
    }
    setError(actingAsError, "");
    const complete = { ...identity };
    if (typeof complete.issuer !== "string") complete.issuer = DEFAULT_ISSUER;
    if (typeof complete.tokenIdentifier !== "string") {
      complete.tokenIdentifier = `${complete.issuer}|${complete.subject}`;
    }
    return complete;
  }

  /** The client for the current identity, made anew when the identity changed. */
  function clientFor(identity) {
    const key = identity === undefined ? "" : JSON.stringify(identity);
    if (client !== null && clientIdentity === key) return client;
    closeClient();
    const auth = { adminKey: ctx.adminKey };
    if (identity !== undefined) auth.actingAs = identity;
    client = new Client(location.origin, { auth, logLines: false });
    clientIdentity = key;
    stopWatching = client.onConnectionChange(({ state }) => {
      runConnection.textContent =
        state === "connected" ? "connected" : state === "disconnected" ? "reconnecting" : state;
    });
    return client;
  }

  function closeClient() {
    if (stopWatching) stopWatching();
    stopWatching = null;
    if (client) client.close();
    client = null;
    clientIdentity = null;
    runConnection.textContent = "";
  }

  const actingAsChanged = debounce(() => {
    if (!alive) return;
    const identity = readActingAs();
    if (identity === null) return;
    // A live query moves to the new identity; otherwise the next run makes the client.
    if (liveQuery) runQuery();
  }, 500);
  actingAs.addEventListener("input", actingAsChanged);

  // --- Running ----------------------------------------------------------------------------

  /** Bumped by every run and every function switch: late outcomes of older ones are dropped. */
  let runToken = 0;
  let unsubscribe = null;
  let liveQuery = false;

  function setStatus(status) {
    runStatus.textContent = status;
    runStatus.className = `run-status${status ? ` status-${status}` : ""}`;
  }

  function clearOutcome() {
    runResult.textContent = "";
    setError(runError, "");
    runLogs.replaceChildren();
    runDuration.textContent = "";
  }

  function showResult(value) {
    try {
      runResult.textContent = prettyJson(encodeValue(value));
    } catch (error) {
      runResult.textContent = String(value);
    }
  }

  function showFailure(error) {
    let text = error?.message ?? String(error);
    if (error && error.data !== undefined) {
      try {
        text += `\n\ndata: ${prettyJson(encodeValue(error.data))}`;
      } catch {
        text += `\n\ndata: ${String(error.data)}`;
      }
    }
    setError(runError, text);
  }

  function showLogs(lines) {
    runLogs.replaceChildren(...(lines ?? []).map((line) => h("li", { text: line })));
  }

  function showDuration(started) {
    runDuration.textContent = `round trip ${formatMs(performance.now() - started)}`;
  }

  function stopQuery() {
    if (unsubscribe) unsubscribe();
    unsubscribe = null;
    liveQuery = false;
    stopButton.hidden = true;
  }

  /** Subscribes to the shown query with the current arguments, replacing any subscription. */
  function runQuery() {
    const target = fn;
    const args = currentArgs();
    const identity = readActingAs();
    if (target === null || args === null || identity === null) return;
    stopQuery();
    const token = ++runToken;
    const c = clientFor(identity);
    const started = performance.now();
    let first = true;
    liveQuery = true;
    stopButton.hidden = false;
    clearOutcome();
    setStatus("loading");
    unsubscribe = c.subscribe(
      target.path,
      args,
      (value, logLines) => {
        if (token !== runToken) return;
        if (first) showDuration(started);
        first = false;
        setStatus("live");
        setError(runError, "");
        showResult(value);
        showLogs(logLines);
      },
      (error) => {
        if (token !== runToken) return;
        if (first) showDuration(started);
        first = false;
        setStatus("error");
        runResult.textContent = "";
        showFailure(error);
        showLogs(error.logLines);
      },
    );
  }

  async function runOnce() {
    const target = fn;
    const args = currentArgs();
    const identity = readActingAs();
    if (target === null || args === null || identity === null) return;
    stopQuery();
    const token = ++runToken;
    const c = clientFor(identity);
    clearOutcome();
    setStatus("running");
    const started = performance.now();
    try {
      const options = { withLogLines: true };
      const call = target.kind === "action" ? c.action(target.path, args, options) : c.mutation(target.path, args, options);
      const { value, logLines } = await call;
      if (token !== runToken || !alive) return;
      showDuration(started);
      setStatus("success");
      showResult(value);
      showLogs(logLines);
    } catch (error) {
      if (token !== runToken || !alive) return;
      showDuration(started);
      setStatus("error");
      showFailure(error);
      showLogs(error.logLines);
    }
  }

  runButton.addEventListener("click", () => {
    if (fn === null || fn.kind === "httpAction") return;
    if (fn.kind === "query") runQuery();
    else runOnce();
  });

  stopButton.addEventListener("click", () => {
    stopQuery();
    runToken++;
    setStatus("stopped");
  });

  // --- Wiring -----------------------------------------------------------------------------

  const offRoute = ctx.onRoute((rest) => showFunction(rest || null));
  // A new module may add, drop or change functions.
  ctx.events.on("deployment", () => loadFunctions());

  showFunction(path, { force: true });
  loadFunctions();

  return () => {
    alive = false;
    offRoute();
    argsChanged.cancel();
    actingAsChanged.cancel();
    stopQuery();
    closeClient();
  };
}
