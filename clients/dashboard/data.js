// The Data page: the tables with their counts, one table's documents as a grid loaded a page
// at a time and kept live, the document editor, and the table's schema and indexes.

import {
  h,
  setError,
  fillCell,
  prettyJson,
  isPlainObject,
  typeLines,
  typeText,
  objectFields,
  sampleValue,
  folded,
  confirmButton,
  watchSentinel,
  encodeRoute,
  sleep,
} from "./util.js";

const PAGE_SIZE = 50;
/** The server's MAX_DASHBOARD_PAGE: the most a refresh asks for at once. */
const MAX_PAGE = 500;
// Rows the grid holds at most: past them it stops loading and says to filter or sort. Every
// loaded row is re-read when a commit names the table, so this also bounds that work.
const MAX_LOADED_ROWS = 5000;
// Least time between two re-reads prompted by commits: a table written many times a second
// is re-read a few times a second, not once per commit.
const REFRESH_SPACING_MS = 250;
/** Pages in a row that matched nothing before auto-loading waits for the user. */
const MAX_EMPTY_PAGES = 20;
const FRESH_MS = 3000;
const SYSTEM_FIELDS = ["_id", "_creationTime"];
const BUILTIN_INDEXES = [
  { name: "by_creation_time", fields: ["_creationTime"] },
  { name: "by_id", fields: ["_id"] },
];
const VALUE_HELP =
  'Fields as wire JSON: plain numbers are float64; int64 is {"$integer": base64 of 8 ' +
  'little-endian bytes}, bytes {"$bytes": base64}, NaN and ±Infinity {"$float": base64}. ' +
  "_id and _creationTime are set by the server.";

export function mount(root, ctx) {
  let alive = true;
  /** The tables as last listed, user tables first. */
  let tables = [];
  let tablesLoaded = false;
  let tableName = ctx.route || null;
  let index = "by_creation_time";
  let order = "desc";
  /** The filter object sent to the server, or null. */
  let filter = null;
  /** Selected rows' ids, kept across refreshes while the rows stay loaded. */
  const selected = new Set();
  let view = newView();
  const timers = new Set();

  // --- Layout ---------------------------------------------------------------------------

  const tableList = h("ul", { id: "tables", class: "table-list" });
  const schemaPanel = h("div", { id: "schema", class: "schema-panel" });
  const title = h("h2", { id: "table-title", text: "Data" });
  const docCount = h("span", { id: "doc-count", text: "0" });
  const pageStatus = h("span", { id: "page-status", class: "muted" });
  const indexSelect = h("select", { id: "index-select", "aria-label": "Index" });
  const orderSelect = h(
    "select",
    { id: "order-select", "aria-label": "Order" },
    h("option", { value: "desc", text: "desc" }),
    h("option", { value: "asc", text: "asc" }),
  );
  const filterInput = h("input", {
    id: "filter-input",
    type: "text",
    placeholder: 'filter, e.g. {"user": "ann"}',
    spellcheck: "false",
    autocomplete: "off",
    "aria-label": "Filter (a JSON object of field paths and values)",
  });
  const filterApply = h("button", { id: "filter-apply", type: "button", text: "Apply" });
  const filterError = h("p", { id: "filter-error", class: "error", role: "alert", hidden: true });
  const addDoc = h("button", { id: "add-doc", type: "button", class: "primary", text: "Add document" });
  const deleteSelected = h("button", {
    id: "delete-selected",
    type: "button",
    class: "danger",
    text: "Delete selected",
    disabled: true,
  });
  const dataError = h("p", { id: "data-error", class: "error", role: "alert", hidden: true });
  const emptyNote = h("p", { id: "data-empty", class: "muted", hidden: true });
  const thead = h("thead");
  const tbody = h("tbody");
  const grid = h("table", { id: "grid", class: "grid" }, thead, tbody);
  const sentinel = h("div", { class: "sentinel", "aria-hidden": "true" });
  const loadMore = h("button", { id: "load-more", type: "button", text: "Load more", hidden: true });
  const gridWrap = h("div", { class: "grid-wrap" }, grid, sentinel);
  // Outside the scrolled grid, so rows loading in never move it from under a click.
  const gridFooter = h("div", { class: "grid-footer" }, loadMore);

  root.append(
    h(
      "div",
      { class: "data-layout" },
      h("aside", { class: "data-side" }, h("h2", { text: "Tables" }), tableList, schemaPanel),
      h(
        "div",
        { class: "data-main" },
        h(
          "div",
          { class: "data-head" },
          title,
          h("span", { class: "muted" }, docCount, " documents"),
          pageStatus,
        ),
        h(
          "div",
          { class: "controls" },
          h("label", {}, "Index ", indexSelect),
          h("label", {}, "Order ", orderSelect),
          filterInput,
          filterApply,
          h("span", { class: "spacer" }),
          addDoc,
          deleteSelected,
        ),
        filterError,
        dataError,
        emptyNote,
        gridWrap,
        gridFooter,
      ),
    ),
  );

  // --- The editor -------------------------------------------------------------------------

  const editorTitle = h("h3", { id: "editor-title" });
  const editorText = h("textarea", { id: "editor-text", spellcheck: "false", rows: "16" });
  const editorError = h("p", { id: "editor-error", class: "error", role: "alert", hidden: true });
  const editorSave = h("button", { id: "editor-save", type: "button", class: "primary", text: "Save" });
  const editorCancel = h("button", { id: "editor-cancel", type: "button", text: "Cancel" });
  const editor = h(
    "dialog",
    { id: "editor", class: "editor" },
    editorTitle,
    h("p", { class: "help", text: VALUE_HELP }),
    editorText,
    editorError,
    h("div", { class: "dialog-buttons" }, editorCancel, editorSave),
  );
  root.append(editor);
  /** What the open editor saves: `{mode: "insert", table}` or `{mode: "replace", table, id}`. */
  let editing = null;
  let saving = false;

  function openEditor(target, text) {
    editing = target;
    editorTitle.textContent =
      target.mode === "insert" ? `New document in ${target.table}` : `Edit ${target.id}`;
    editorText.value = text;
    setError(editorError, "");
    if (typeof editor.showModal === "function") {
      if (!editor.open) editor.showModal();
    } else {
      editor.setAttribute("open", "");
    }
    editorText.focus();
  }

  function closeEditor() {
    editing = null;
    if (editor.open) {
      if (typeof editor.close === "function") editor.close();
      else editor.removeAttribute("open");
    }
  }

  async function saveEditor() {
    if (editing === null || saving) return;
    let fields;
    try {
      fields = JSON.parse(editorText.value);
    } catch (error) {
      setError(editorError, `Not valid JSON: ${error.message}`);
      return;
    }
    if (!isPlainObject(fields)) {
      setError(editorError, 'A document is a JSON object of its fields, e.g. {"user": "ann"}.');
      return;
    }
    // The system fields are the server's; an edit that kept them means no change to them.
    for (const field of SYSTEM_FIELDS) delete fields[field];
    const target = editing;
    saving = true;
    editorSave.disabled = true;
    setError(editorError, "");
    try {
      if (target.mode === "insert") {
        await ctx.api("POST", "/api/dashboard/documents/insert", { table: target.table, fields });
      } else {
        await ctx.api("POST", "/api/dashboard/documents/replace", { id: target.id, fields });
      }
      if (editing === target) closeEditor();
    } catch (error) {
      if (editing === target && alive) setError(editorError, error.message);
    } finally {
      saving = false;
      editorSave.disabled = false;
    }
  }

  editorSave.addEventListener("click", saveEditor);
  editorCancel.addEventListener("click", closeEditor);
  editor.addEventListener("close", () => {
    editing = null;
  });
  editorText.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      saveEditor();
    }
  });

  addDoc.addEventListener("click", () => {
    if (!tableName) return;
    const table = currentTable();
    const sample = table?.schema ? sampleValue(table.schema) : {};
    openEditor({ mode: "insert", table: tableName }, prettyJson(isPlainObject(sample) ? sample : {}));
  });

  // --- Tables -----------------------------------------------------------------------------

  function currentTable() {
    return tables.find((t) => t.name === tableName);
  }

  /** An index's fields for display; the server may list `by_id` with none, as it is implicit. */
  function indexFields(ix) {
    const fields = Array.isArray(ix.fields) ? ix.fields : [];
    return fields.length === 0 && ix.name === "by_id" ? ["_id"] : fields;
  }

  function indexesOf(table) {
    const declared = Array.isArray(table?.indexes) ? table.indexes : [];
    const builtins = BUILTIN_INDEXES.filter((b) => !declared.some((d) => d.name === b.name));
    return [...builtins, ...declared];
  }

  const refreshTables = folded(REFRESH_SPACING_MS, async () => {
    if (!alive) return;
    try {
      const answer = await ctx.api("GET", "/api/dashboard/tables");
      if (!alive) return;
      const list = Array.isArray(answer.tables) ? answer.tables : [];
      // User tables first, then the system ones, each by name.
      tables = [...list].sort(
        (a, b) => Number(Boolean(a.system)) - Number(Boolean(b.system)) || a.name.localeCompare(b.name),
      );
      tablesLoaded = true;
      renderTableList();
      renderTableInfo();
      if (!tableName) pickDefaultTable();
    } catch (error) {
      if (alive && error.status !== 401) setError(dataError, `Listing tables failed: ${error.message}`);
    }
  });

  function pickDefaultTable() {
    const first = tables.find((t) => !t.system) ?? tables[0];
    if (first) {
      ctx.navigate(`#/data/${encodeRoute(first.name)}`, { replace: true });
    } else {
      renderEmptyState();
    }
  }

  function renderTableList() {
    tableList.replaceChildren(
      ...tables.map((table) =>
        h(
          "li",
          {
            class: `table-item${table.system ? " system" : ""}${table.name === tableName ? " selected" : ""}`,
            dataset: { table: table.name },
          },
          h(
            "a",
            { href: `#/data/${encodeRoute(table.name)}`, title: table.name },
            h("span", { class: "name", text: table.name }),
            table.system ? h("span", { class: "badge", text: "system" }) : null,
            h("span", { class: "count", text: String(table.documents ?? 0) }),
          ),
        ),
      ),
    );
  }

  /** The count, the schema panel, the index choices and the schema's columns. */
  function renderTableInfo() {
    const table = currentTable();
    docCount.textContent = String(table?.documents ?? 0);
    renderSchema(table);
    renderIndexOptions(table);
    const schemaFields = objectFields(table?.schema).map(([name]) => name);
    if (schemaFields.some((name) => !view.fieldSet.has(name))) {
      // The schema's order first, then what rows brought.
      view.fields = [...schemaFields, ...view.fields.filter((f) => !schemaFields.includes(f))];
      view.fieldSet = new Set(view.fields);
      renderAll(new Set());
    }
    const system = Boolean(table?.system);
    addDoc.disabled = !tableName || system;
    addDoc.title = system ? "System tables are written by the server only" : "";
  }

  function renderSchema(table) {
    const children = [h("h3", { text: "Schema" })];
    if (!table) {
      children.push(h("p", { class: "muted", text: tableName ? "unknown table" : "no table selected" }));
    } else if (table.schema) {
      children.push(h("ul", { class: "type-lines mono" }, ...typeLines(table.schema).map((line) => h("li", { text: line }))));
    } else {
      children.push(h("p", { class: "muted", text: "no schema declared" }));
    }
    if (table) {
      children.push(h("h3", { text: "Indexes" }));
      children.push(
        h(
          "ul",
          { class: "index-lines mono" },
          ...indexesOf(table).map((ix) => h("li", { text: `${ix.name}: ${indexFields(ix).join(", ")}` })),
        ),
      );
    }
    schemaPanel.replaceChildren(...children);
  }

  function renderIndexOptions(table) {
    const names = indexesOf(table).map((ix) => ix.name);
    const shown = [...indexSelect.options].map((o) => o.value);
    if (names.join("\n") === shown.join("\n")) return;
    indexSelect.replaceChildren(
      ...indexesOf(table).map((ix) => {
        const fields = indexFields(ix);
        return h("option", { value: ix.name, text: fields.length ? `${ix.name} (${fields.join(", ")})` : ix.name });
      }),
    );
    if (!names.includes(index)) index = "by_creation_time";
    indexSelect.value = index;
  }

  function renderEmptyState() {
    const none = tablesLoaded && tables.length === 0;
    emptyNote.textContent = none ? "No tables yet: nothing has been written." : "Select a table.";
    emptyNote.hidden = Boolean(tableName);
    gridWrap.hidden = !tableName;
    gridFooter.hidden = !tableName;
  }

  // --- Documents --------------------------------------------------------------------------

  function newView() {
    return {
      docs: [],
      ids: new Set(),
      cursor: null,
      isDone: false,
      requests: 0,
      emptyStreak: 0,
      failed: false,
      loading: false,
      fields: [],
      fieldSet: new Set(),
    };
  }

  function columns() {
    return [...SYSTEM_FIELDS, ...view.fields];
  }

  /** Starts the shown table over from its first page (a new table, index, order or filter). */
  function resetView() {
    view = newView();
    const schemaFields = objectFields(currentTable()?.schema).map(([name]) => name);
    view.fields = schemaFields;
    view.fieldSet = new Set(schemaFields);
    selected.clear();
    rowCache.clear();
    setError(dataError, "");
    setError(filterError, "");
    gridWrap.scrollTop = 0;
    renderHeader();
    tbody.replaceChildren();
    renderEmptyState();
    updateStatus();
    if (tableName) {
      wantMore = "asked";
      pump();
    }
  }

  async function fetchPage(cursor, limit) {
    const params = new URLSearchParams({ table: tableName, index, order, limit: String(limit) });
    if (cursor !== null && cursor !== undefined) params.set("cursor", cursor);
    if (filter !== null) params.set("filter", JSON.stringify(filter));
    return ctx.api("GET", `/api/dashboard/documents?${params}`);
  }

  function showLoadError(error) {
    if (error.status === 401) return;
    if (error.status === 400 && (error.code === "BadFilter" || filter !== null)) {
      setError(filterError, error.message);
    } else {
      setError(dataError, error.message);
    }
  }

  // Loading and refreshing take turns: one request at a time, so rows never interleave.
  let busy = false;
  /** false, "auto" (the end came into view) or "asked" (a first page, the button). */
  let wantMore = false;
  let wantRefresh = false;

  async function pump() {
    if (busy || !alive) return;
    busy = true;
    try {
      while (alive && tableName) {
        if (wantRefresh) {
          wantRefresh = false;
          if (view.requests > 0) await refreshLoaded();
          // Commits that came meanwhile fold into the next re-read, a moment later.
          if (wantRefresh) await sleep(REFRESH_SPACING_MS);
          continue;
        }
        if (wantMore) {
          const asked = wantMore === "asked";
          wantMore = false;
          if (view.isDone || view.failed || view.docs.length >= MAX_LOADED_ROWS) continue;
          // The end may have been in view only before the last page came in.
          if (!asked && view.requests > 0 && !more.visible()) continue;
          await loadNext();
          // A page that did not fill the view: go on while the end is in sight.
          if (!view.isDone && !view.failed && view.emptyStreak < MAX_EMPTY_PAGES && more.visible()) {
            wantMore = "auto";
          }
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
      const answer = await fetchPage(v.cursor, PAGE_SIZE);
      if (v !== view || !alive) return;
      v.requests++;
      v.cursor = answer.cursor ?? null;
      v.isDone = Boolean(answer.isDone);
      const docs = (answer.documents ?? []).filter((doc) => !v.ids.has(doc._id));
      v.emptyStreak = docs.length === 0 && !v.isDone ? v.emptyStreak + 1 : 0;
      setError(dataError, "");
      setError(filterError, "");
      appendDocs(docs);
    } catch (error) {
      if (v !== view || !alive) return;
      v.failed = true;
      showLoadError(error);
    } finally {
      v.loading = false;
    }
  }

  /**
   * Re-reads the loaded range from the start (as many rows as are shown, in whole pages) and
   * replaces the rows in place: the scroll position stays.
   */
  async function refreshLoaded() {
    const v = view;
    const target = Math.max(PAGE_SIZE, Math.ceil(v.docs.length / PAGE_SIZE) * PAGE_SIZE);
    // Each first load read at most one scan budget; as many reads cover the same range.
    const maxRequests = Math.max(1, v.requests);
    const docs = [];
    const ids = new Set();
    let cursor = null;
    let isDone = false;
    let requests = 0;
    try {
      while (docs.length < target && !isDone && requests < maxRequests) {
        const answer = await fetchPage(cursor, Math.min(MAX_PAGE, target - docs.length));
        if (v !== view || !alive) return;
        requests++;
        for (const doc of answer.documents ?? []) {
          if (ids.has(doc._id)) continue;
          ids.add(doc._id);
          docs.push(doc);
        }
        cursor = answer.cursor ?? null;
        isDone = Boolean(answer.isDone);
      }
    } catch (error) {
      if (v === view && alive) showLoadError(error);
      return;
    }
    const fresh = new Set(docs.filter((doc) => !v.ids.has(doc._id)).map((doc) => doc._id));
    v.docs = docs;
    v.ids = ids;
    v.cursor = cursor;
    v.isDone = isDone;
    v.failed = false;
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    setError(dataError, "");
    noteFields(docs);
    renderAll(fresh);
  }

  function removeDocs(ids) {
    const gone = new Set(ids);
    view.docs = view.docs.filter((doc) => !gone.has(doc._id));
    for (const id of gone) {
      view.ids.delete(id);
      selected.delete(id);
      rowCache.get(id)?.tr.remove();
      rowCache.delete(id);
    }
    updateSelection();
    updateStatus();
  }

  // --- Rows -------------------------------------------------------------------------------

  /** Built rows by id, with the JSON they show, so unchanged rows are kept as they are. */
  const rowCache = new Map();

  /** Adds the fields `docs` bring to the columns; whether any was new. */
  function noteFields(docs) {
    let grew = false;
    for (const doc of docs) {
      for (const key of Object.keys(doc)) {
        if (SYSTEM_FIELDS.includes(key) || view.fieldSet.has(key)) continue;
        view.fieldSet.add(key);
        view.fields.push(key);
        grew = true;
      }
    }
    return grew;
  }

  function appendDocs(docs) {
    for (const doc of docs) view.ids.add(doc._id);
    view.docs.push(...docs);
    if (noteFields(docs)) {
      renderAll(new Set());
    } else {
      tbody.append(...docs.map((doc) => rowFor(doc)));
    }
    updateStatus();
  }

  /** Renders every loaded row, reusing those that did not change; `fresh` ids are highlighted. */
  function renderAll(fresh) {
    const shownColumns = columns().join("\n");
    if (thead.dataset.columns !== shownColumns) {
      renderHeader();
      rowCache.clear();
    }
    const keep = new Set();
    const rows = view.docs.map((doc) => {
      keep.add(doc._id);
      const tr = rowFor(doc);
      if (fresh.has(doc._id)) flash(tr, "fresh");
      return tr;
    });
    for (const id of [...rowCache.keys()]) if (!keep.has(id)) rowCache.delete(id);
    tbody.replaceChildren(...rows);
    updateSelection();
    updateStatus();
  }

  function flash(tr, className) {
    tr.classList.add(className);
    const timer = setTimeout(() => {
      timers.delete(timer);
      tr.classList.remove(className);
    }, FRESH_MS);
    timers.add(timer);
  }

  function renderHeader() {
    const selectAll = h("input", {
      type: "checkbox",
      id: "select-all",
      "aria-label": "Select all loaded rows",
      onchange: () => {
        for (const doc of view.docs) {
          if (selectAll.checked) selected.add(doc._id);
          else selected.delete(doc._id);
        }
        for (const box of tbody.querySelectorAll("input.select")) box.checked = selectAll.checked;
        updateSelection();
      },
    });
    const types = Object.fromEntries(objectFields(currentTable()?.schema));
    thead.dataset.columns = columns().join("\n");
    thead.replaceChildren(
      h(
        "tr",
        {},
        h("th", { class: "select-cell" }, selectAll),
        ...columns().map((field) =>
          h("th", { dataset: { field }, text: field, title: types[field] ? typeText(types[field]) : null }),
        ),
        h("th", { class: "actions-cell", "aria-label": "Actions" }),
      ),
    );
  }

  function rowFor(doc) {
    const raw = JSON.stringify(doc);
    const cached = rowCache.get(doc._id);
    if (cached && cached.raw === raw) return cached.tr;
    const tr = buildRow(doc);
    if (cached) flash(tr, "changed");
    rowCache.set(doc._id, { tr, raw });
    return tr;
  }

  function buildRow(doc) {
    const id = doc._id;
    const tr = h("tr", { class: "doc", dataset: { id } });
    const box = h("input", {
      type: "checkbox",
      class: "select",
      checked: selected.has(id),
      "aria-label": `Select ${id}`,
      onchange: () => {
        if (box.checked) selected.add(id);
        else selected.delete(id);
        updateSelection();
      },
    });
    tr.append(h("td", { class: "select-cell" }, box));
    for (const field of columns()) {
      const cell = h("td", { dataset: { field } });
      fillCell(cell, doc[field], field);
      tr.append(cell);
    }
    const system = Boolean(currentTable()?.system);
    const edit = h("button", { type: "button", class: "edit", text: "Edit", disabled: system });
    edit.addEventListener("click", () => {
      const fields = {};
      for (const [key, value] of Object.entries(doc)) {
        if (!SYSTEM_FIELDS.includes(key)) fields[key] = value;
      }
      openEditor({ mode: "replace", table: tableName, id }, prettyJson(fields));
    });
    const del = confirmButton("delete", "Delete", () => deleteDocs([id]));
    del.disabled = system;
    tr.append(h("td", { class: "actions-cell" }, edit, del));
    return tr;
  }

  async function deleteDocs(ids) {
    if (ids.length === 0) return;
    try {
      await ctx.api("POST", "/api/dashboard/documents/delete", { ids });
      if (!alive) return;
      setError(dataError, "");
      // Gone at once; the commit's refresh confirms it.
      removeDocs(ids);
    } catch (error) {
      if (alive && error.status !== 401) setError(dataError, `Deleting failed: ${error.message}`);
    }
  }

  function updateSelection() {
    const count = selected.size;
    deleteSelected.disabled = count === 0;
    deleteSelected.textContent = count === 0 ? "Delete selected" : `Delete selected (${count})`;
    const selectAll = thead.querySelector("#select-all");
    if (selectAll) {
      selectAll.checked = count > 0 && view.docs.length > 0 && view.docs.every((d) => selected.has(d._id));
      selectAll.indeterminate = count > 0 && !selectAll.checked;
    }
  }

  function updateStatus() {
    const n = view.docs.length;
    if (!tableName) {
      pageStatus.textContent = "";
    } else if (view.requests === 0) {
      pageStatus.textContent = view.failed ? "" : "loading…";
    } else if (view.isDone) {
      pageStatus.textContent = `all ${n} shown`;
    } else if (n >= MAX_LOADED_ROWS) {
      pageStatus.textContent = `${n} shown, the most the grid holds: filter, or sort by another index or order, to see others`;
    } else {
      pageStatus.textContent = `${n} shown, more below`;
    }
    loadMore.hidden =
      !tableName || view.isDone || n >= MAX_LOADED_ROWS || (view.requests === 0 && !view.failed);
    loadMore.disabled = view.loading;
    loadMore.textContent = view.loading ? "Loading…" : "Load more";
  }

  // --- Controls ---------------------------------------------------------------------------

  const more = watchSentinel(
    sentinel,
    () => {
      if (view.isDone || view.failed || wantMore) return;
      wantMore = "auto";
      pump();
    },
    gridWrap,
  );

  loadMore.addEventListener("click", () => {
    view.failed = false;
    view.emptyStreak = 0;
    wantMore = "asked";
    pump();
  });

  indexSelect.addEventListener("change", () => {
    index = indexSelect.value;
    resetView();
  });
  orderSelect.addEventListener("change", () => {
    order = orderSelect.value;
    resetView();
  });

  function applyFilter() {
    const text = filterInput.value.trim();
    if (text === "") {
      filter = null;
    } else {
      let parsed;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        setError(filterError, `The filter is not valid JSON: ${error.message}`);
        return;
      }
      if (!isPlainObject(parsed)) {
        setError(filterError, 'The filter is a JSON object of field paths and values, e.g. {"user": "ann"}.');
        return;
      }
      filter = parsed;
    }
    resetView();
  }

  filterApply.addEventListener("click", applyFilter);
  filterInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      applyFilter();
    }
  });

  deleteSelected.addEventListener("click", () => deleteDocs([...selected]));

  function selectTable(name) {
    const next = name || null;
    if (next === tableName) return;
    tableName = next;
    index = "by_creation_time";
    order = "desc";
    filter = null;
    orderSelect.value = order;
    filterInput.value = "";
    title.textContent = tableName ?? "Data";
    for (const item of tableList.querySelectorAll(".table-item")) {
      item.classList.toggle("selected", item.dataset.table === tableName);
    }
    resetView();
    renderTableInfo();
    indexSelect.value = index;
    if (!tableName && tablesLoaded) pickDefaultTable();
  }

  // --- Live -------------------------------------------------------------------------------

  ctx.events.on("change", (changedTables) => {
    refreshTables();
    if (tableName && (changedTables === null || changedTables.has(tableName))) {
      wantRefresh = true;
      pump();
    }
  });
  const offRoute = ctx.onRoute((rest) => selectTable(rest));

  title.textContent = tableName ?? "Data";
  resetView();
  renderTableInfo();
  refreshTables();

  return () => {
    alive = false;
    offRoute();
    more.disconnect();
    for (const timer of timers) clearTimeout(timer);
    closeEditor();
  };
}
