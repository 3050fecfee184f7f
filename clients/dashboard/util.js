// Shared helpers of the dashboard: building DOM, showing values, types, times and sizes, SVG
// sparklines, and folding bursts of events into few requests.
//
// Everything the pages show from the server goes through textContent or attributes, never
// through HTML parsing: documents, log lines and names are user data.

import { decodeValue } from "/api/client.js";

const SVG_NS = "http://www.w3.org/2000/svg";
/** Cells longer than this are cut; the full text stays in the title. */
const CELL_CHARS = 160;

/**
 * Creates an element. `props`: `class`, `text`, `on<event>` handlers, `dataset` (an object),
 * the DOM properties `value`, `checked`, `disabled`, `hidden`, `selected`, `open`, and any
 * other key as an attribute (skipped when null or false). Children are nodes or strings.
 *
 * @param {string} tag
 * @param {Record<string, any>} [props]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") element.className = value;
    else if (key === "text") element.textContent = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (["value", "checked", "disabled", "hidden", "selected", "open"].includes(key)) {
      element[key] = value;
    } else if (value !== false) {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/** Shows `text` in an error element, hiding it when empty (hidden text reads as ""). */
export function setError(element, text) {
  element.textContent = text ?? "";
  element.hidden = !text;
}

/** The message of an error for the page: the server's own when it sent one. */
export function errorText(error) {
  if (error === null || error === undefined) return "";
  return error.message || String(error);
}

// --- Values (wire JSON, docs/PROTOCOL.md section 1) ------------------------------------

/** Whether `json` is one of the `$`-tagged encodings of section 1. */
function tagged(json) {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return undefined;
  const keys = Object.keys(json);
  if (keys.length !== 1 || !keys[0].startsWith("$")) return undefined;
  return keys[0];
}

/** The readable form of a `$integer`, `$float` or `$bytes`, or undefined if malformed. */
function specialText(json, tag) {
  try {
    const value = decodeValue(json);
    if (tag === "$integer") return `${value}n`;
    if (tag === "$bytes") return `bytes(${value.length})`;
    if (tag === "$float") return Object.is(value, -0) ? "-0" : String(value);
  } catch {
    // Shown as plain JSON below: better than hiding what the server sent.
  }
  return undefined;
}

/**
 * A compact one-line form of a wire value: JSON syntax, with int64 as `123n`, bytes as
 * `bytes(16)` and special floats by name, so nested values stay readable.
 *
 * @param {unknown} json a value in wire JSON
 * @returns {string}
 */
export function compactValue(json) {
  if (json === undefined) return "";
  if (json === null || typeof json !== "object") return JSON.stringify(json);
  const tag = tagged(json);
  if (tag !== undefined) {
    const text = specialText(json, tag);
    if (text !== undefined) return text;
  }
  if (Array.isArray(json)) return `[${json.map(compactValue).join(",")}]`;
  const fields = Object.entries(json).map(([k, v]) => `${JSON.stringify(k)}:${compactValue(v)}`);
  return `{${fields.join(",")}}`;
}

/**
 * How a grid cell shows a value: strings as their text, everything else in the compact form.
 *
 * @param {unknown} json a value in wire JSON
 * @returns {{text: string, kind: string}} `kind` names the value's type, for styling
 */
export function cellValue(json) {
  if (json === undefined) return { text: "", kind: "missing" };
  if (json === null) return { text: "null", kind: "null" };
  switch (typeof json) {
    case "string":
      return { text: json, kind: "string" };
    case "number":
      return { text: String(json), kind: "number" };
    case "boolean":
      return { text: String(json), kind: "boolean" };
  }
  const tag = tagged(json);
  if (tag === "$integer" || tag === "$float") return { text: compactValue(json), kind: "number" };
  if (tag === "$bytes") return { text: compactValue(json), kind: "bytes" };
  return { text: compactValue(json), kind: Array.isArray(json) ? "array" : "object" };
}

/** Fills a cell with a value, cut to a readable length, with the whole in its title. */
export function fillCell(cell, json, field) {
  let shown;
  if (field === "_creationTime" && typeof json === "number") {
    shown = { text: formatTime(json), kind: "time" };
    cell.title = String(json);
  } else {
    shown = cellValue(json);
    cell.removeAttribute("title");
    if (shown.text.length > CELL_CHARS) cell.title = shown.text;
  }
  cell.className = `v-${shown.kind}`;
  cell.textContent = shown.text.length > CELL_CHARS ? `${shown.text.slice(0, CELL_CHARS)}…` : shown.text;
}

/** A value as indented wire JSON, for editors and results. */
export function prettyJson(json) {
  return JSON.stringify(json, null, 2);
}

/** Whether a parsed JSON value is an object (not an array, not null). */
export function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// --- Types (the schema trees of abi::Type::to_value) -----------------------------------

/**
 * A type in one line: `string`, `optional<int64>`, `array<string>`, `a | b`,
 * `{ user: string, n: float64 }`.
 *
 * @param {any} type
 * @returns {string}
 */
export function typeText(type) {
  if (!isPlainObject(type)) return "any";
  switch (type.type) {
    case "array":
      return `array<${typeText(type.items)}>`;
    case "record":
      return `record<string, ${typeText(type.values)}>`;
    case "optional":
      return `optional<${typeText(type.inner)}>`;
    case "union":
      return (type.options ?? []).map(typeText).join(" | ") || "never";
    case "object": {
      const fields = Object.entries(type.fields ?? {});
      if (fields.length === 0) return "{}";
      return `{ ${fields.map(([name, t]) => `${name}: ${typeText(t)}`).join(", ")} }`;
    }
    default:
      return String(type.type ?? "any");
  }
}

/** A type as lines: one `name: type` per field of an object type, else the one line. */
export function typeLines(type) {
  if (isPlainObject(type) && type.type === "object") {
    const fields = Object.entries(type.fields ?? {});
    if (fields.length === 0) return ["{} (no fields)"];
    return fields.map(([name, t]) => `${name}: ${typeText(t)}`);
  }
  return [typeText(type)];
}

/** The fields of an object type, in its order, or [] for any other type. */
export function objectFields(type) {
  if (!isPlainObject(type) || type.type !== "object") return [];
  return Object.entries(type.fields ?? {});
}

/**
 * A value of a type, as a starting point for a form or an editor: empty strings, zeros,
 * `false`; optional fields left out.
 */
export function sampleValue(type, depth = 0) {
  if (!isPlainObject(type) || depth > 8) return null;
  switch (type.type) {
    case "string":
      return "";
    case "float64":
      return 0;
    case "int64":
      return { $integer: "AAAAAAAAAAA=" };
    case "boolean":
      return false;
    case "bytes":
      return { $bytes: "" };
    case "array":
      return [];
    case "record":
      return {};
    case "union":
      return sampleValue(type.options?.[0], depth + 1);
    case "object": {
      const object = {};
      for (const [name, t] of objectFields(type)) {
        if (t?.type !== "optional") object[name] = sampleValue(t, depth + 1);
      }
      return object;
    }
    default:
      return null;
  }
}

// --- Times and sizes -------------------------------------------------------------------

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** Milliseconds since the epoch as a local `YYYY-MM-DD HH:MM:SS`. */
export function formatTime(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "";
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** Milliseconds since the epoch as a local `HH:MM:SS.mmm`, for log rows. */
export function formatClock(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A duration in milliseconds, with precision where it matters. */
export function formatMs(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** A byte count in binary units (`1.5 MiB`). */
export function humanBytes(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** A module hash shortened for display. */
export function shortHash(hash) {
  return typeof hash === "string" ? hash.slice(0, 12) : "";
}

// --- Sparklines ------------------------------------------------------------------------

/**
 * A small line chart of `values` (oldest first), as an `svg.chart`.
 *
 * @param {number[]} values
 * @param {{width?: number, height?: number, label?: string}} [options]
 * @returns {SVGSVGElement}
 */
export function sparkline(values, options = {}) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  drawSparkline(svg, values, options);
  return svg;
}

/** Redraws a sparkline in place (so ids and listeners on the svg stay). */
export function drawSparkline(svg, values, options = {}) {
  const width = options.width ?? Number(svg.getAttribute("width") ?? 240);
  const height = options.height ?? Number(svg.getAttribute("height") ?? 48);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const points = Array.isArray(values) ? values.map((v) => (Number.isFinite(v) ? v : 0)) : [];
  const max = Math.max(1, ...points);
  const last = points.length > 0 ? points[points.length - 1] : 0;
  const label = options.label ?? svg.getAttribute("aria-label") ?? "per second";
  svg.setAttribute("aria-label", label);
  const title = document.createElementNS(SVG_NS, "title");
  title.textContent = `${label}: last ${last}, max ${max}`;
  const children = [title];
  if (points.length > 1) {
    // A 2px margin keeps the line's stroke inside the box at the extremes.
    const step = width / (points.length - 1);
    const y = (v) => (height - 2 - (v / max) * (height - 4)).toFixed(1);
    const coords = points.map((v, i) => `${(i * step).toFixed(1)},${y(v)}`);
    const area = document.createElementNS(SVG_NS, "path");
    area.setAttribute("class", "area");
    area.setAttribute("d", `M0,${height} L${coords.join(" L")} L${width},${height} Z`);
    const line = document.createElementNS(SVG_NS, "polyline");
    line.setAttribute("class", "line");
    line.setAttribute("points", coords.join(" "));
    children.push(area, line);
  }
  svg.replaceChildren(...children);
}

// --- Scheduling ------------------------------------------------------------------------

/**
 * Wraps an async task so that bursts of calls run it at most once at a time, plus once more
 * afterwards if calls came while it ran (`spacingMs` after the last): every call is answered
 * by a run that starts after it, without a request per event.
 *
 * @param {number} spacingMs least time between two runs when calls keep coming
 * @param {() => Promise<void>} task
 * @returns {() => void}
 */
export function folded(spacingMs, task) {
  let running = false;
  let again = false;
  return function run() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    (async () => {
      try {
        do {
          again = false;
          try {
            await task();
          } catch (error) {
            console.error(error);
          }
          // Calls that came while it ran fold into one more run, a moment later.
          if (again && spacingMs > 0) await sleep(spacingMs);
        } while (again);
      } finally {
        running = false;
      }
    })();
  };
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Calls `fn` once `ms` have passed without another call. */
export function debounce(fn, ms) {
  let timer;
  const call = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}

/**
 * A button that asks before acting: the first click turns it into "Confirm" (class
 * `confirming`), a second click within a few seconds runs `action`, otherwise it reverts.
 */
export function confirmButton(className, label, action, { timeoutMs = 3000, title } = {}) {
  const button = h("button", { type: "button", class: className, text: label, title });
  let timer;
  const revert = () => {
    clearTimeout(timer);
    button.classList.remove("confirming");
    button.textContent = label;
  };
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    if (!button.classList.contains("confirming")) {
      button.classList.add("confirming");
      button.textContent = "Confirm";
      timer = setTimeout(revert, timeoutMs);
      return;
    }
    revert();
    action();
  });
  return button;
}

/**
 * Watches `sentinel` coming into view (within `root`, or the viewport) and calls `onVisible`.
 * Returns `{ visible(), disconnect() }`: `visible` says whether it is in view now, so a
 * loader can go on after a page that did not fill the view.
 */
export function watchSentinel(sentinel, onVisible, root = null, margin = 300) {
  let inView = false;
  const observer = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) inView = entry.isIntersecting;
      if (inView) onVisible();
    },
    { root, rootMargin: `${margin}px` },
  );
  observer.observe(sentinel);
  return {
    visible() {
      if (!sentinel.isConnected) return false;
      const rect = sentinel.getBoundingClientRect();
      const bounds = root
        ? root.getBoundingClientRect()
        : { top: 0, bottom: window.innerHeight, height: window.innerHeight };
      if (bounds.height === 0) return false;
      return rect.top <= bounds.bottom + margin && rect.bottom >= bounds.top - margin;
    },
    disconnect() {
      observer.disconnect();
    },
  };
}

/** Encodes a route segment (a table name or a function path), keeping `/` and `:`. */
export function encodeRoute(text) {
  return encodeURIComponent(text).replace(/%2F/gi, "/").replace(/%3A/gi, ":");
}
