// Argon's web console: a page over the REST API (/api/v1), nothing else.
"use strict";

const API = "/api/v1";
const state = { branches: [], selected: "main", auth: null, lastRates: null, merge: null };

// -- talking to the API ------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.errmsg ? `${body.codeName} (${body.code}): ${body.errmsg}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  // X-Requested-With: a refused login comes back without a challenge, so the
  // browser leaves the asking to the page's own form.
  const headers = { Accept: "application/json", "X-Requested-With": "argon-console" };
  if (state.auth) headers.Authorization = "Basic " + state.auth;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) {
    if (response.status === 401) showLogin();
    throw new ApiError(response.status, data);
  }
  return data;
}

function query(params) {
  const usp = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== undefined && v !== null) usp.set(k, v);
  const s = usp.toString();
  return s ? "?" + s : "";
}

// -- small helpers -------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(value) {
  if (value === undefined) return "";
  if (value !== null && typeof value === "object" && "$date" in value) return String(value.$date);
  return JSON.stringify(value);
}

function pretty(value) {
  return el("pre", {}, value === undefined ? "(absent)" : JSON.stringify(value, null, 2));
}

function say(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
}

async function attempt(action) {
  try {
    await action();
  } catch (err) {
    say(err.message, true);
  }
}

// -- login ---------------------------------------------------------------------

function showLogin() {
  $("login").hidden = false;
  $("app").hidden = true;
}

async function start() {
  state.auth = sessionStorage.getItem("argon-auth");
  try {
    const who = await api("GET", "/whoami");
    $("who").textContent = who.auth ? `signed in as ${who.user}` : "no authentication";
  } catch (err) {
    if (err.status === 401) return;
    throw err;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  await refreshStatus();
  await refreshBranches();
  await refreshRates();
  if (!state.polling) state.polling = setInterval(() => attempt(refreshRates), 2000);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const raw = `${$("login-user").value}:${$("login-password").value}`;
  state.auth = btoa(String.fromCharCode(...new TextEncoder().encode(raw)));
  $("login-error").textContent = "";
  try {
    await api("GET", "/whoami");
  } catch (err) {
    state.auth = null;
    $("login-error").textContent = err.message;
    return;
  }
  sessionStorage.setItem("argon-auth", state.auth);
  attempt(start);
});

async function refreshStatus() {
  const status = await api("GET", "/status");
  $("status").textContent = `LSN ${show(status.lsn)} · default branch ${status.default_branch}`;
}

// -- branches ------------------------------------------------------------------

async function refreshBranches() {
  const reply = await api("GET", "/branches" + query({ all: $("show-all").checked ? "true" : "", stats: "true" }));
  state.branches = reply.branches;
  if (!state.branches.some((b) => b.name === state.selected)) {
    // main first when this user may read it; else the first branch they may read
    state.selected = state.branches.length ? state.branches[0].name : "";
  }
  drawTree();
  if (state.selected) await selectBranch(state.selected);
}

function drawTree() {
  const byParent = new Map();
  const names = new Set(state.branches.map((b) => b.name));
  for (const b of state.branches) {
    const parent = b.parent && names.has(b.parent) ? b.parent : null;
    if (!byParent.has(parent)) byParent.set(parent, []);
    byParent.get(parent).push(b);
  }
  const build = (parent) => {
    const items = byParent.get(parent) || [];
    return items.map((b) => {
      const badges = [];
      for (const flag of ["protected", "archived", "snapshot", "read_only"]) {
        if (b[flag]) badges.push(el("span", { class: "badge" }, flag.replace("_", "-")));
      }
      const stats = b.stats || {};
      const meta = [
        b.parent ? `from ${b.parent} at LSN ${b.base_lsn}, ${show(b.created)}` : "the real data",
        `last activity ${show(b.last_activity)}`,
        `${stats.changes ?? 0} changes, ${stats.overlay_documents ?? 0} docs / ${stats.overlay_bytes ?? 0} B in overlays`,
        b.expires ? `expires ${show(b.expires)}` : null,
      ].filter(Boolean).join(" · ");
      const label = el(
        "span",
        {
          class: "branch" + (b.name === state.selected ? " selected" : ""),
          "data-branch": b.name,
          onclick: () => attempt(() => selectBranch(b.name)),
        },
        b.name,
        badges,
        el("span", { class: "meta" }, meta),
      );
      const kids = byParent.get(b.name) ? el("ul", {}, build(b.name)) : null;
      return el("li", {}, label, kids);
    });
  };
  $("branch-tree").replaceChildren(...build(null));
}

async function selectBranch(name) {
  state.selected = name;
  for (const node of document.querySelectorAll(".branch")) {
    node.classList.toggle("selected", node.dataset.branch === name);
  }
  for (const node of document.querySelectorAll(".current-branch")) node.textContent = name;
  const { branch } = await api("GET", "/branches/" + encodeURIComponent(name));
  $("branch-title").textContent = branch.name;
  const rows = [
    ["parent", branch.parent ?? "—"],
    ["fork LSN", branch.base_lsn],
    ["head LSN", branch.head_lsn],
    ["created", show(branch.created)],
    ["last activity", show(branch.last_activity)],
    ["changes", branch.stats ? branch.stats.changes : "—"],
    ["overlay", branch.stats ? `${branch.stats.overlay_documents} documents, ${branch.stats.overlay_bytes} bytes` : "—"],
    ["expires", branch.expires ? show(branch.expires) : "never"],
    ["state", ["protected", "archived", "snapshot", "read_only"].filter((f) => branch[f]).join(", ") || "writable"],
    ["tags", (branch.tags || []).join(", ") || "—"],
  ];
  $("branch-details").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  $("branch-actions").hidden = name === "main";
  $("protect-button").textContent = branch.protected ? "Unprotect" : "Protect";
  $("protect-button").dataset.protected = branch.protected ? "true" : "false";
  if (!$("merge-source").value || state.branches.every((b) => b.name !== $("merge-source").value)) {
    $("merge-source").value = name === "main" ? "" : name;
  }
}

$("show-all").addEventListener("change", () => attempt(refreshBranches));

$("create-form").addEventListener("submit", (event) => {
  event.preventDefault();
  attempt(async () => {
    const name = $("create-name").value.trim();
    await api("POST", "/branches", { name, from: $("create-from").value.trim() || "main" });
    $("create-name").value = "";
    state.selected = name;
    await refreshBranches();
    say(`Created branch ${name}.`);
  });
});

$("delete-button").addEventListener("click", () =>
  attempt(async () => {
    const name = state.selected;
    if (!confirm(`Delete branch ${name} and everything written on it?`)) return;
    await api("DELETE", "/branches/" + encodeURIComponent(name));
    state.selected = "main";
    await refreshBranches();
    say(`Deleted branch ${name}.`);
  }),
);

$("archive-button").addEventListener("click", () =>
  attempt(async () => {
    await api("POST", `/branches/${encodeURIComponent(state.selected)}/archive`);
    say(`Archived branch ${state.selected}.`);
    await refreshBranches();
  }),
);

$("protect-button").addEventListener("click", () =>
  attempt(async () => {
    const protect = $("protect-button").dataset.protected !== "true";
    await api("PUT", `/branches/${encodeURIComponent(state.selected)}/protection`, { protected: protect });
    say(`${protect ? "Protected" : "Unprotected"} branch ${state.selected}.`);
    await refreshBranches();
  }),
);

$("snapshot-button").addEventListener("click", () =>
  attempt(async () => {
    const name = prompt("Snapshot name", `${state.selected}-snap`);
    if (!name) return;
    await api("POST", "/snapshots", { name, branch: state.selected });
    say(`Snapshot ${name} of ${state.selected} made.`);
    await refreshBranches();
  }),
);

// -- rates ---------------------------------------------------------------------

async function refreshRates() {
  const now = await api("GET", "/rates");
  const before = state.lastRates;
  state.lastRates = now;
  const rows = Object.entries(now.requests).sort().map(([branch, total]) => {
    const previous = before ? before.requests[branch] || 0 : total;
    const seconds = before ? Math.max(now.at - before.at, 0.001) : 1;
    return el("tr", {}, el("td", {}, branch), el("td", {}, ((total - previous) / seconds).toFixed(1)), el("td", {}, total));
  });
  $("rates").tBodies[0].replaceChildren(...rows);
}

// -- history -------------------------------------------------------------------

$("history-form").addEventListener("submit", (event) => {
  event.preventDefault();
  attempt(drawHistory);
});

async function drawHistory() {
  const reply = await api(
    "GET",
    `/branches/${encodeURIComponent(state.selected)}/log` +
      query({
        db: $("history-db").value.trim(),
        collection: $("history-collection").value.trim(),
        docId: $("history-doc").value.trim(),
        app: $("history-app").value.trim(),
        user: $("history-user").value.trim(),
        limit: 100,
      }),
  );
  const entries = reply.entries.map((e) => {
    const who = e.client ? [e.client.user, e.client.app].filter(Boolean).join(" via ") || `connection ${e.client.conn}` : "";
    const changes = el(
      "table",
      { class: "changes" },
      el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "before"), el("th", {}, "after"))),
      el(
        "tbody",
        {},
        (e.changes || []).map((c) =>
          el("tr", {}, el("td", {}, c.path), el("td", { class: "before" }, show(c.before)), el("td", { class: "after" }, show(c.after))),
        ),
      ),
    );
    return el(
      "div",
      { class: "entry", "data-lsn": e.lsn },
      el("strong", {}, `${e.op} ${e.ns} ${show(e.docId)}`),
      ` · LSN ${e.lsn} · ${show(e.ts)} · ${who}`,
      changes,
    );
  });
  $("history").replaceChildren(...(entries.length ? entries : [el("p", {}, "No changes.")]));
}

// -- diff ----------------------------------------------------------------------

$("diff-form").addEventListener("submit", (event) => {
  event.preventDefault();
  attempt(async () => {
    const reply = await api(
      "GET",
      "/diff" + query({ from: $("diff-from").value.trim(), to: $("diff-to").value.trim(), collection: $("diff-collection").value.trim() }),
    );
    const blocks = (reply.diff.collections || []).map((c) =>
      el(
        "div",
        { class: "entry diff-collection" },
        el("strong", {}, c.ns),
        ` · ${c.added} added, ${c.removed} removed, ${c.modified} modified`,
        el(
          "table",
          {},
          el("thead", {}, el("tr", {}, el("th", {}, "_id"), el("th", {}, "change"), el("th", {}, "field"), el("th", {}, "from"), el("th", {}, "to"))),
          el("tbody", {}, c.documents.flatMap((d) => diffRows(d))),
        ),
      ),
    );
    $("diff").replaceChildren(...(blocks.length ? blocks : [el("p", {}, "No differences.")]));
  });
});

function diffRows(d) {
  if (d.change !== "modified") {
    const doc = d.change === "added" ? d.after : d.before;
    return [el("tr", {}, el("td", {}, show(d.docId)), el("td", {}, d.change), el("td", {}, "(document)"),
      el("td", { class: "before" }, d.change === "removed" ? show(doc) : ""), el("td", { class: "after" }, d.change === "added" ? show(doc) : ""))];
  }
  return d.fields.map((f) =>
    el("tr", {}, el("td", {}, show(d.docId)), el("td", {}, "modified"), el("td", {}, f.path),
      el("td", { class: "before" }, show(f.before)), el("td", { class: "after" }, show(f.after))),
  );
}

// -- merge ---------------------------------------------------------------------

$("merge-form").addEventListener("submit", (event) => {
  event.preventDefault();
  attempt(async () => {
    const reply = await api("POST", "/merges", {
      source: $("merge-source").value.trim(),
      into: $("merge-into").value.trim(),
      dryRun: true,
    });
    state.merge = reply.merge;
    await drawMerge();
  });
});

async function drawMerge() {
  const m = state.merge;
  const { conflicts } = await api("GET", `/merges/${encodeURIComponent(m.id)}/conflicts`);
  const counts = Object.entries(m.counts || {})
    .filter(([k]) => k !== "conflicts")
    .map(([k, v]) => `${v} ${k}`)
    .join(", ");
  const open = conflicts.filter((c) => !c.resolution).length;
  const items = conflicts.map((c, i) => conflictView(m, c, i));
  const apply = el("button", { id: "apply-merge", onclick: () => attempt(applyMerge) }, "Apply merge");
  if (open) apply.disabled = true;
  $("merge").replaceChildren(
    el("p", { id: "merge-summary" }, `Merge ${m.id}: ${m.source} into ${m.target} · ${counts || "nothing to do"} · conflicts: ${conflicts.length}, open: ${open}`),
    ...items,
    apply,
  );
}

function conflictView(m, c, index) {
  const editor = el("textarea", { class: "edited" }, JSON.stringify(c.ours ?? c.theirs ?? { _id: c.docId }, null, 2));
  const resolve = (take, document) =>
    attempt(async () => {
      await api("POST", `/merges/${encodeURIComponent(m.id)}/resolutions`, { ns: c.ns, docId: c.docId, take, document });
      say(`Resolved ${c.ns} ${show(c.docId)}: ${take}.`);
      await drawMerge();
    });
  return el(
    "div",
    { class: "entry conflict-entry", "data-index": index },
    el("strong", {}, `${c.ns} ${show(c.docId)}`),
    ` · ${c.kind} · fields ${(c.paths || []).join(", ") || "—"}`,
    c.resolution ? el("span", { class: "badge resolution" }, `resolved: ${c.resolution.take}`) : null,
    el("div", { class: "conflict" },
      el("div", {}, el("h4", {}, "base"), pretty(c.base)),
      el("div", {}, el("h4", {}, `ours (${m.target})`), pretty(c.ours)),
      el("div", {}, el("h4", {}, `theirs (${m.source})`), pretty(c.theirs))),
    el("div", { class: "row" },
      el("button", { class: "take-ours", onclick: () => resolve("ours") }, "Keep ours"),
      el("button", { class: "take-theirs", onclick: () => resolve("theirs") }, "Take theirs"),
      el("button", {
        class: "take-document",
        onclick: () => {
          let doc;
          try {
            doc = JSON.parse(editor.value);
          } catch (err) {
            say(`The edited document is not JSON: ${err.message}`, true);
            return;
          }
          resolve("document", doc);
        },
      }, "Use edited document")),
    editor,
  );
}

async function applyMerge() {
  const reply = await api("POST", `/merges/${encodeURIComponent(state.merge.id)}/apply`);
  say(`Merge ${reply.merge.id} applied: ${reply.merge.status}.`);
  $("merge").replaceChildren(el("p", { id: "merge-summary" }, `Applied merge ${reply.merge.id} of ${reply.merge.source} into ${reply.merge.target}.`));
  await refreshBranches();
}

// -- time travel ---------------------------------------------------------------

$("tt-form").addEventListener("submit", (event) => {
  event.preventDefault();
  attempt(async () => {
    const db = encodeURIComponent($("tt-db").value.trim());
    const coll = encodeURIComponent($("tt-collection").value.trim());
    const reply = await api(
      "GET",
      `/documents/${db}/${coll}` + query({ ref: $("tt-ref").value.trim() || state.selected, filter: $("tt-filter").value.trim() }),
    );
    const rows = reply.documents.map((d) => el("tr", {}, el("td", {}, show(d._id)), el("td", {}, pretty(d))));
    $("timetravel").replaceChildren(
      el("p", {}, `${reply.documents.length} documents at ${reply.ref}`),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "_id"), el("th", {}, "document"))), el("tbody", {}, rows)),
    );
  });
});

// -- tags ----------------------------------------------------------------------

async function drawTags() {
  const { tags } = await api("GET", "/tags");
  $("tags").tBodies[0].replaceChildren(
    ...tags.map((t) =>
      el("tr", {}, el("td", {}, t.name), el("td", {}, t.branch), el("td", {}, t.lsn), el("td", {}, t.message ?? ""),
        el("td", {}, el("button", { onclick: () => attempt(async () => { await api("DELETE", "/tags/" + encodeURIComponent(t.name)); await drawTags(); }) }, "Delete"))),
    ),
  );
}

$("tag-form").addEventListener("submit", (event) => {
  event.preventDefault();
  attempt(async () => {
    await api("POST", "/tags", { name: $("tag-name").value.trim(), branch: $("tag-branch").value.trim() || state.selected, message: $("tag-message").value });
    say(`Tagged ${$("tag-branch").value.trim() || state.selected} as ${$("tag-name").value.trim()}.`);
    $("tag-name").value = "";
    await drawTags();
  });
});

// -- tabs ----------------------------------------------------------------------

for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll("#tabs button")) other.classList.toggle("active", other === button);
    for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== "tab-" + button.dataset.tab;
    say("");
    if (button.dataset.tab === "history") attempt(drawHistory);
    if (button.dataset.tab === "tags") attempt(drawTags);
  });
}

attempt(start);
