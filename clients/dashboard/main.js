// The dashboard's shell: sign-in with the admin key, the API helper, the one events stream of
// the app, the top bar and the hash router that mounts one page at a time.

import { h, setError, shortHash, formatTime } from "./util.js";
import * as dataPage from "./data.js";
import * as functionsPage from "./functions.js";
import * as logsPage from "./logs.js";
import * as schedulesPage from "./schedules.js";
import * as healthPage from "./health.js";
import * as settingsPage from "./settings.js";

const KEY_STORAGE = "ferrovexAdminKey";
/** Executions kept for the Logs page, whether it is open or not. */
const MAX_EXECUTIONS = 2000;
const MAX_STREAM_BACKOFF_MS = 10_000;
/** The server pings every 15 s of silence; past this the stream is presumed dead. */
const STREAM_SILENCE_MS = 45_000;

const PAGES = {
  data: { title: "Data", module: dataPage },
  functions: { title: "Functions", module: functionsPage },
  logs: { title: "Logs", module: logsPage },
  schedules: { title: "Schedules", module: schedulesPage },
  health: { title: "Health", module: healthPage },
  settings: { title: "Settings", module: settingsPage },
};

const signinForm = document.getElementById("signin");
const keyInput = document.getElementById("admin-key");
const signinError = document.getElementById("signin-error");
const app = document.getElementById("app");
const nav = document.getElementById("nav");
const main = document.getElementById("main");
const topVersion = document.getElementById("top-version");
const liveStatus = document.getElementById("live-status");
const appError = document.getElementById("app-error");

let adminKey = null;
/** Bumped on every sign-in and sign-out, so late answers of a previous session are dropped. */
let session = 0;

// --- The API helper ----------------------------------------------------------------------

/**
 * Calls the server with the admin key. Returns the parsed JSON answer; throws an Error with
 * `code`, `status` and `message` (the server's `{"code", "message"}` when it sent one). A 401
 * signs out: the key was refused.
 *
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body] sent as JSON
 */
async function api(method, path, body) {
  const mySession = session;
  const headers = { Authorization: `Convex ${adminKey}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (cause) {
    const error = new Error(`${method} ${path}: the server cannot be reached (${cause.message})`);
    error.code = "NetworkError";
    error.status = 0;
    throw error;
  }
  const text = await response.text();
  let json;
  try {
    json = text === "" ? null : JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!response.ok) {
    const error = new Error(json?.message ?? `${method} ${path}: HTTP ${response.status}`);
    error.code = json?.code ?? `Http${response.status}`;
    error.status = response.status;
    if (response.status === 401 && mySession === session) signOut(error.message);
    throw error;
  }
  if (json === undefined) {
    const error = new Error(`${method} ${path}: the answer is not JSON`);
    error.code = "BadAnswer";
    error.status = response.status;
    throw error;
  }
  return json;
}

// --- Events --------------------------------------------------------------------------------

// One bus for the whole app; pages listen through their context, which unhooks them when
// they unmount.
const bus = new EventTarget();

function emit(type, detail) {
  bus.dispatchEvent(new CustomEvent(type, { detail }));
}

/** The executions received (oldest first), with keys to skip the history a reconnect resends. */
const executions = [];
const executionKeys = new Set();
let deployment = null;
let streamController = null;
let liveState = "reconnecting";

function executionKey(message) {
  return `${message.startedMs}|${message.path}|${message.durationMs}|${message.outcome}`;
}

function setLive(state) {
  liveState = state;
  liveStatus.textContent = state;
  liveStatus.className = `live-status ${state}`;
  emit("status", state);
}

/**
 * The app's one `GET /api/dashboard/events` stream, kept open while signed in: reconnects
 * after 1 s, 2 s, 4 s ... up to 10 s, and tells the pages to re-read after a gap.
 */
async function runEvents(mySession) {
  const controller = new AbortController();
  streamController = controller;
  let delay = 1000;
  let connectedBefore = false;
  while (!controller.signal.aborted && mySession === session) {
    const attempt = new AbortController();
    const stop = () => attempt.abort();
    controller.signal.addEventListener("abort", stop);
    let watchdog;
    const feed = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(stop, STREAM_SILENCE_MS);
    };
    try {
      feed();
      const response = await fetch("/api/dashboard/events", {
        headers: { Authorization: `Convex ${adminKey}`, Accept: "application/x-ndjson" },
        cache: "no-store",
        signal: attempt.signal,
      });
      if (response.status === 401) {
        let message = "the admin key was refused";
        try {
          message = (await response.json()).message ?? message;
        } catch {
          // The status says enough.
        }
        if (mySession === session) signOut(message);
        return;
      }
      if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let caughtUp = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        feed();
        buffer += decoder.decode(value, { stream: true });
        const lines = buffer.split("\n");
        buffer = lines.pop();
        for (const line of lines) {
          if (line.trim() === "") continue;
          let message;
          try {
            message = JSON.parse(line);
          } catch {
            console.warn("dashboard: ignoring an events line that is not JSON", line);
            continue;
          }
          if (message.type === "hello") {
            delay = 1000;
            caughtUp = false;
            setLive("live");
            if (connectedBefore) {
              // Commits may have happened while the stream was down: everything is stale.
              emit("change", null);
              refreshDeployment();
            }
            connectedBefore = true;
          } else if (message.type === "caughtUp") {
            caughtUp = true;
          }
          dispatch(message, caughtUp);
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      console.warn("dashboard: the events stream failed:", error.message);
    } finally {
      clearTimeout(watchdog);
      controller.signal.removeEventListener("abort", stop);
    }
    if (controller.signal.aborted || mySession !== session) return;
    setLive("reconnecting");
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, delay);
      controller.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    delay = Math.min(delay * 2, MAX_STREAM_BACKOFF_MS);
  }
}

function dispatch(message, caughtUp) {
  switch (message.type) {
    case "execution": {
      const key = executionKey(message);
      // A reconnect replays the server's history: what we hold already is not new.
      if (!caughtUp && executionKeys.has(key)) return;
      executions.push(message);
      executionKeys.add(key);
      while (executions.length > MAX_EXECUTIONS) executionKeys.delete(executionKey(executions.shift()));
      emit("execution", message);
      break;
    }
    case "commit":
      emit("commit", message);
      emit("change", new Set(message.tables ?? []));
      break;
    case "skipped":
      emit("skipped", message);
      if (message.what === "commits") emit("change", null);
      break;
    default:
      emit(message.type, message);
  }
}

// --- Deployment (the top bar) ------------------------------------------------------------

async function refreshDeployment() {
  const mySession = session;
  try {
    const info = await api("GET", "/api/dashboard/deployment");
    if (mySession !== session) return;
    setError(appError, "");
    const changed = deployment?.version !== info.version;
    deployment = info;
    topVersion.textContent = shortHash(info.version) || "—";
    topVersion.title = `module ${info.version}, deployed ${formatTime(info.deployedAtMs)}`;
    if (changed) emit("deployment", info);
  } catch (error) {
    if (error.status !== 401 && mySession === session) setError(appError, error.message);
  }
}

// --- Pages and routing ---------------------------------------------------------------------

let current = null; // { name, root, unmount, offs, routeListeners }

function parseHash() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(2) : "";
  const slash = hash.indexOf("/");
  const name = slash < 0 ? hash : hash.slice(0, slash);
  let rest = slash < 0 ? "" : hash.slice(slash + 1);
  try {
    rest = decodeURIComponent(rest);
  } catch {
    // A malformed escape: the raw text is the best guess.
  }
  return { name, rest };
}

function navigate(hash, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, "", hash);
    route();
  } else if (location.hash !== hash) {
    location.hash = hash;
  } else {
    route();
  }
}

function route() {
  if (adminKey === null) return;
  const { name, rest } = parseHash();
  if (!(name in PAGES)) {
    navigate("#/data", { replace: true });
    return;
  }
  for (const link of nav.querySelectorAll("a[data-page]")) {
    const active = link.dataset.page === name;
    link.classList.toggle("active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (current && current.name === name) {
    // The same page with another table or function: it follows without remounting.
    current.rest = rest;
    for (const listener of [...current.routeListeners]) listener(rest);
    return;
  }
  unmountPage();
  const root = h("section", { id: `page-${name}`, class: "page" });
  main.replaceChildren(root);
  document.title = `${PAGES[name].title} · Dashboard`;
  const page = { name, root, rest, unmount: null, offs: [], routeListeners: new Set() };
  current = page;
  const ctx = {
    api,
    navigate,
    get adminKey() {
      return adminKey;
    },
    get route() {
      return page.rest;
    },
    onRoute(listener) {
      page.routeListeners.add(listener);
      return () => page.routeListeners.delete(listener);
    },
    events: {
      /** Listens to a bus event; the listener gets the event's detail. Undone at unmount. */
      on(type, listener) {
        const handler = (event) => listener(event.detail);
        bus.addEventListener(type, handler);
        const off = () => bus.removeEventListener(type, handler);
        page.offs.push(off);
        return off;
      },
      get state() {
        return liveState;
      },
    },
    executions: () => executions,
    deployment: () => deployment,
  };
  try {
    page.unmount = PAGES[name].module.mount(root, ctx);
  } catch (error) {
    console.error(error);
    root.replaceChildren(h("p", { class: "error", text: `This page failed to open: ${error.message}` }));
  }
}

function unmountPage() {
  if (current === null) return;
  const page = current;
  current = null;
  for (const off of page.offs) off();
  try {
    if (typeof page.unmount === "function") page.unmount();
  } catch (error) {
    console.error(error);
  }
  page.root.remove();
}

// --- Sign-in -------------------------------------------------------------------------------

function showSignin(message) {
  app.hidden = true;
  signinForm.hidden = false;
  setError(signinError, message ?? "");
  keyInput.value = "";
  keyInput.focus();
}

/** Checks the key against the server, then opens the app, or the form with the refusal. */
async function signIn(key) {
  adminKey = key;
  const mySession = ++session;
  sessionStorage.setItem(KEY_STORAGE, key);
  const submit = document.getElementById("signin-submit");
  submit.disabled = true;
  try {
    deployment = await api("GET", "/api/dashboard/deployment");
  } catch (error) {
    if (mySession !== session) return;
    // A refused key has signed out already; anything else may pass: the key could be right.
    if (error.status === 401) return;
    deployment = null;
    setError(appError, error.message);
  } finally {
    submit.disabled = false;
  }
  if (mySession !== session) return;
  signinForm.hidden = true;
  setError(signinError, "");
  app.hidden = false;
  topVersion.textContent = shortHash(deployment?.version) || "—";
  topVersion.title = deployment ? `module ${deployment.version}` : "";
  setLive("reconnecting");
  runEvents(mySession);
  if (!location.hash.startsWith("#/")) navigate("#/data", { replace: true });
  else route();
}

function signOut(message) {
  session++;
  adminKey = null;
  sessionStorage.removeItem(KEY_STORAGE);
  if (streamController) streamController.abort();
  streamController = null;
  unmountPage();
  executions.length = 0;
  executionKeys.clear();
  deployment = null;
  showSignin(message);
}

signinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (key === "") {
    setError(signinError, "Enter the deployment's admin key (runtime admin-key prints it).");
    return;
  }
  signIn(key);
});

document.getElementById("signout").addEventListener("click", () => signOut(""));

/** Takes a key from a `#key=` address into sessionStorage; whether there was one. */
/** The key a `#key=` link carries, saved for this tab; null when the link carries none. */
function takeKeyFromHash() {
  if (!location.hash.startsWith("#key=")) return null;
  let key = location.hash.slice("#key=".length);
  try {
    key = decodeURIComponent(key);
  } catch {
    // Not escaped: taken as it is.
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  // The key leaves the address bar (and the history) at once.
  history.replaceState(null, "", `${location.pathname}${location.search}#/data`);
  return key;
}

window.addEventListener("hashchange", () => {
  // A `#key=` link opened in a tab that already shows the dashboard: held here, since
  // signing out forgets the stored key.
  const key = takeKeyFromHash();
  if (key !== null) {
    if (adminKey !== null) signOut("");
    signIn(key);
    return;
  }
  route();
});

takeKeyFromHash();
const storedKey = sessionStorage.getItem(KEY_STORAGE);
if (storedKey) signIn(storedKey);
else showSignin("");
