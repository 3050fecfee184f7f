// The Settings page: what is deployed, and the environment variables functions read.

import { h, setError, formatTime, humanBytes, shortHash } from "./util.js";

const MASK = "••••";

export function mount(root, ctx) {
  let alive = true;

  const url = h("dd", { id: "deployment-url", class: "mono", text: location.origin });
  const version = h("dd", { id: "module-version", class: "mono", text: "—" });
  const deployedAt = h("dd", { id: "deployed-at", text: "—" });
  const runtimeVersion = h("dd", { id: "runtime-version", class: "mono", text: "—" });
  const startedAt = h("dd", { id: "started-at", text: "—" });
  const functionCount = h("dd", { id: "function-count", text: "—" });
  const dataSize = h("dd", { id: "settings-data-size", text: "—" });
  const deploymentError = h("p", { id: "deployment-error", class: "error", role: "alert", hidden: true });

  const envBody = h("tbody");
  const envTable = h(
    "table",
    { id: "env-vars", class: "grid" },
    h("thead", {}, h("tr", {}, h("th", { text: "name" }), h("th", { text: "value" }), h("th"))),
    envBody,
  );
  const envEmpty = h("p", { class: "muted", text: "No environment variables are set.", hidden: true });
  const envName = h("input", {
    id: "env-name",
    type: "text",
    placeholder: "NAME",
    spellcheck: "false",
    autocomplete: "off",
    "aria-label": "Name",
  });
  const envValue = h("input", {
    id: "env-value",
    type: "text",
    placeholder: "value",
    spellcheck: "false",
    autocomplete: "off",
    "aria-label": "Value",
  });
  const envSave = h("button", { id: "env-save", type: "submit", class: "primary", text: "Set" });
  const envError = h("p", { id: "env-error", class: "error", role: "alert", hidden: true });
  const envForm = h("form", { id: "env-form", class: "env-form" }, envName, envValue, envSave);

  function row(label, value) {
    return [h("dt", { text: label }), value];
  }

  root.append(
    h(
      "div",
      { class: "scroll-page" },
      h("h2", { text: "Settings" }),
      h(
        "section",
        { class: "panel" },
        h("h3", { text: "Deployment" }),
        deploymentError,
        h(
          "dl",
          { class: "facts" },
          ...row("URL", url),
          ...row("Module version", version),
          ...row("Deployed", deployedAt),
          ...row("Runtime version", runtimeVersion),
          ...row("Server started", startedAt),
          ...row("Functions", functionCount),
          ...row("Data on disk", dataSize),
        ),
      ),
      h(
        "section",
        { class: "panel" },
        h("h3", { text: "Environment variables" }),
        h("p", { class: "help", text: "Functions read these; a change applies to calls that start after it." }),
        envTable,
        envEmpty,
        envForm,
        envError,
      ),
    ),
  );

  function showDeployment(info) {
    if (!info) return;
    version.textContent = shortHash(info.version) || "—";
    version.title = info.version ?? "";
    deployedAt.textContent = formatTime(info.deployedAtMs) || "—";
    runtimeVersion.textContent = info.runtimeVersion ?? "—";
    startedAt.textContent = formatTime(info.startedAtMs) || "—";
    functionCount.textContent = String(info.functions ?? "—");
    dataSize.textContent = humanBytes(info.dataBytes);
  }

  async function loadDeployment() {
    try {
      const info = await ctx.api("GET", "/api/dashboard/deployment");
      if (!alive) return;
      setError(deploymentError, "");
      showDeployment(info);
    } catch (error) {
      if (alive && error.status !== 401) setError(deploymentError, error.message);
    }
  }

  // --- Environment variables --------------------------------------------------------------

  function envRow(name, value) {
    const shown = h("span", { class: "value mono masked", text: MASK });
    const reveal = h("button", { type: "button", class: "reveal", text: "Reveal" });
    reveal.addEventListener("click", () => {
      const masked = shown.classList.toggle("masked");
      shown.textContent = masked ? MASK : value;
      reveal.textContent = masked ? "Reveal" : "Hide";
    });
    const remove = h("button", { type: "button", class: "env-delete danger", text: "Delete" });
    remove.addEventListener("click", () => setVariables({ [name]: null }, remove));
    return h(
      "tr",
      { class: "env-row", dataset: { name } },
      h("td", { class: "name mono", text: name }),
      h("td", {}, shown),
      h("td", { class: "actions-cell" }, reveal, remove),
    );
  }

  async function loadEnv() {
    try {
      const answer = await ctx.api("GET", "/api/env");
      if (!alive) return;
      const variables = answer.variables ?? {};
      const names = Object.keys(variables).sort();
      envBody.replaceChildren(...names.map((name) => envRow(name, String(variables[name]))));
      envEmpty.hidden = names.length > 0;
    } catch (error) {
      if (alive && error.status !== 401) setError(envError, error.message);
    }
  }

  async function setVariables(set, button) {
    button.disabled = true;
    try {
      await ctx.api("POST", "/api/env", { set });
      if (!alive) return;
      setError(envError, "");
      await loadEnv();
      return true;
    } catch (error) {
      if (alive && error.status !== 401) setError(envError, error.message);
      return false;
    } finally {
      button.disabled = false;
    }
  }

  envForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = envName.value.trim();
    if (name === "") {
      setError(envError, "Enter the variable's name.");
      envName.focus();
      return;
    }
    if (await setVariables({ [name]: envValue.value }, envSave)) {
      envName.value = "";
      envValue.value = "";
    }
  });

  ctx.events.on("deployment", showDeployment);

  showDeployment(ctx.deployment());
  loadDeployment();
  loadEnv();

  return () => {
    alive = false;
  };
}
