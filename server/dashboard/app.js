// The apt-ostree dashboard: plain ES module, no framework. Pages read the admin REST API with
// the session cookie and re-render within moments of a fleet change announced on
// /api/v1/events (server-sent events). Times are shown in the viewer's time zone.

const main = document.getElementById("main");
const live = document.getElementById("live");
const view = { filters: { q: "", group: "", tag: "", architecture: "", version: "", state: "" } };
const STATES = ["idle", "downloading", "staged", "rebooting", "verifying", "healthy", "rolled-back", "failed"];

async function api(path, options = {}) {
  const response = await fetch(`/api/v1/${path}`, {
    method: options.method ?? "GET",
    credentials: "same-origin",
    headers: { "x-apt-ostree-request": "1", ...(options.body ? { "content-type": "application/json" } : {}) },
    body: options.body ? JSON.stringify(options.body) : undefined,
  });
  if (response.status === 401) {
    location.assign("/login");
    throw new Error("signed out");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error?.message ?? `${response.status} ${response.statusText}`);
  return body;
}

const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const when = (iso) => (iso ? `<time datetime="${esc(iso)}">${esc(new Date(iso).toLocaleString())}</time>` : "never");
const badge = (text, kind = text) => `<span class="badge s-${esc(kind ?? "unknown")}">${esc(text ?? "unknown")}</span>`;
const short = (commit) => (commit ? `<code title="${esc(commit)}">${esc(commit.slice(0, 12))}</code>` : "");
const deployment = (d) => (d ? `${esc(d.version)} ${short(d.commit)}` : "—");
/** What the device layered on its release with apt-ostree install/override (docs/layering.md). */
const layering = (l) => {
  if (!l) return "—";
  const parts = [l.packages.length ? `added ${l.packages.join(", ")}` : "", l.removed.length ? `removed ${l.removed.join(", ")}` : "", l.replaced.length ? `replaced ${l.replaced.join(", ")}` : ""].filter(Boolean);
  return esc(`${parts.join("; ") || "—"}${l.truncated ? " (and more)" : ""}`);
};
const bytes = (n) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

// ---------------------------------------------------------------- fleet

function matches(device) {
  const f = view.filters;
  return (!f.q || device.id.includes(f.q.trim()))
    && (!f.group || device.groups.includes(f.group))
    && (!f.tag || device.tags.includes(f.tag))
    && (!f.architecture || device.architecture === f.architecture)
    && (!f.version || (device.booted?.version ?? "unknown") === f.version)
    && (!f.state || (device.state ?? "unknown") === f.state);
}

function select(name, label, values) {
  const options = [...new Set(values)].sort().map((v) => `<option ${view.filters[name] === v ? "selected" : ""}>${esc(v)}</option>`).join("");
  return `<label>${label}<select data-filter="${name}"><option value="">any</option>${options}</select></label>`;
}

function deviceRows(devices) {
  const shown = devices.filter(matches);
  const rows = shown.map((d) => `<tr>
    <td><a href="#/devices/${encodeURIComponent(d.id)}">${esc(d.id)}</a></td>
    <td>${badge(d.state ?? "unknown")}</td>
    <td>${esc(d.booted?.version ?? "unknown")}</td>
    <td>${badge(d.online ? "online" : "offline")}</td>
    <td class="hide-narrow">${esc(d.groups.join(", "))}</td>
    <td class="hide-narrow">${esc(d.tags.join(", "))}</td>
    <td class="hide-narrow">${esc(d.architecture ?? "")}</td>
    <td>${when(d.lastSeen)}</td></tr>`).join("");
  return `<p id="shown">${shown.length} of ${devices.length} devices</p>
  <div class="scroll"><table aria-describedby="shown"><thead><tr><th>Device</th><th>State</th><th>Version</th><th>Online</th>
  <th class="hide-narrow">Groups</th><th class="hide-narrow">Tags</th><th class="hide-narrow">Arch</th><th>Last seen</th></tr></thead>
  <tbody>${rows || '<tr><td colspan="8">No device matches.</td></tr>'}</tbody></table></div>`;
}

async function fleetPage() {
  const [fleet, { devices }] = await Promise.all([api("fleet"), api("devices")]);
  const accepted = devices.filter((d) => d.enrollment === "accepted");
  const pending = devices.filter((d) => d.enrollment === "pending");
  const rejected = devices.filter((d) => d.enrollment === "rejected");
  const tiles = [["devices", accepted.length], ["online", accepted.filter((d) => d.online).length], ["pending enrollment", pending.length],
    ...STATES.map((s) => [s, fleet.byState[s] ?? 0])];
  const versions = Object.entries(fleet.byVersion).sort((a, b) => b[1] - a[1]);
  const most = Math.max(1, ...versions.map(([, n]) => n));
  main.innerHTML = `<h1>Fleet</h1>
  <section class="tiles" aria-label="Counts">${tiles.map(([label, n]) => `<div class="tile" data-count="${esc(label)}"><span class="n">${n}</span><span class="l">${esc(label)}</span></div>`).join("")}</section>
  <h2 id="versions">Versions across the fleet</h2>
  <div class="bars" role="list" aria-labelledby="versions">${versions.map(([v, n]) => `<span role="listitem">${esc(v)}</span><span class="bar" data-width="${(n / most) * 100}" aria-hidden="true"></span><span>${n}</span>`).join("") || "<span>No devices yet.</span>"}</div>
  ${pending.length ? `<h2>Waiting for enrollment</h2><div class="scroll"><table><thead><tr><th>Device</th><th>Key</th><th>First seen</th><th></th></tr></thead><tbody>
    ${pending.map((d) => `<tr><td>${esc(d.id)}</td><td><code>${esc(d.publicKey)}</code></td><td>${when(d.enrolledAt)}</td>
    <td><div class="buttons">${enrollmentButtons(d, ["accept", "reject", "delete"])}</div></td></tr>`).join("")}</tbody></table></div>` : ""}
  ${rejected.length ? `<h2>Rejected</h2><div class="scroll"><table><thead><tr><th>Device</th><th>Key</th><th>First seen</th><th></th></tr></thead><tbody>
    ${rejected.map((d) => `<tr><td><a href="#/devices/${encodeURIComponent(d.id)}">${esc(d.id)}</a></td><td><code>${esc(d.publicKey)}</code></td><td>${when(d.enrolledAt)}</td>
    <td><div class="buttons">${enrollmentButtons(d, ["accept", "delete"])}</div></td></tr>`).join("")}</tbody></table></div>` : ""}
  <h2>Devices</h2>
  <div class="filters">
    <label>Search<input data-filter="q" type="search" value="${esc(view.filters.q)}" placeholder="device id"></label>
    ${select("group", "Group", accepted.flatMap((d) => d.groups))}
    ${select("tag", "Tag", accepted.flatMap((d) => d.tags))}
    ${select("architecture", "Architecture", accepted.map((d) => d.architecture ?? "unknown"))}
    ${select("version", "Version", accepted.map((d) => d.booted?.version ?? "unknown"))}
    ${select("state", "State", [...STATES, ...accepted.map((d) => d.state ?? "unknown")])}
  </div>
  <div id="device-table">${deviceRows(accepted)}</div>`;
  for (const input of main.querySelectorAll("[data-filter]")) {
    input.addEventListener("input", () => {
      view.filters[input.dataset.filter] = input.value;
      document.getElementById("device-table").innerHTML = deviceRows(accepted);
    });
  }
  wireEnrollmentButtons();
}

// Accept, reject and delete: the same buttons on the fleet page and a device's page.
const ENROLLMENT_ACTIONS = {
  accept: { label: "Accept", question: (id) => `Accept device ${id}? It can then report and take updates.`, path: (id) => `devices/${encodeURIComponent(id)}/accept`, method: "POST" },
  reject: { label: "Reject", question: (id) => `Reject device ${id}? Its connection is ended and it is refused from now on.`, path: (id) => `devices/${encodeURIComponent(id)}/reject`, method: "POST" },
  delete: { label: "Delete", question: (id) => `Delete device ${id} and its history? If it connects again it waits for enrollment as a new device.`, path: (id) => `devices/${encodeURIComponent(id)}`, method: "DELETE" },
};

function enrollmentButtons(device, actions) {
  return actions.map((action) => `<button ${action === "accept" ? "" : 'class="danger" '}data-enrollment="${action}" data-id="${esc(device.id)}">${ENROLLMENT_ACTIONS[action].label} ${esc(device.id)}</button>`).join("");
}

function wireEnrollmentButtons() {
  for (const button of main.querySelectorAll("[data-enrollment]")) {
    const { enrollment, id } = button.dataset;
    const action = ENROLLMENT_ACTIONS[enrollment];
    button.addEventListener("click", async () => {
      const done = await act(action.question(id), action.path(id), action.method);
      if (done && enrollment === "delete" && location.hash.startsWith("#/devices/")) location.hash = "#/";
    });
  }
}

// ---------------------------------------------------------------- device

function healthList(health) {
  if (!health?.length) return "";
  return `<ul>${health.map((h) => `<li>${badge(h.ok ? "pass" : h.kind === "required" ? "fail" : "warn", h.ok ? "healthy" : h.kind === "required" ? "failed" : "paused")}
    ${esc(h.kind)} check <strong>${esc(h.name)}</strong>${h.output ? `<pre>${esc(h.output)}</pre>` : ""}</li>`).join("")}</ul>`;
}

async function devicePage(id) {
  const { device, events } = await api(`devices/${encodeURIComponent(id)}`);
  const reports = events.filter((e) => e.report);
  const latest = reports[0]?.report;
  const rollbacks = reports.filter((e) => e.report.rolledBack);
  const progress = device.state === "downloading" && latest?.progress;
  main.innerHTML = `<p><a href="#/">← Fleet</a></p><h1>${esc(device.id)} ${badge(device.state ?? "unknown")} ${badge(device.online ? "online" : "offline")}</h1>
  ${progress ? `<p>Downloading: <progress max="${progress.total}" value="${progress.bytes}"></progress> ${bytes(progress.bytes)} of ${bytes(progress.total)}</p>` : ""}
  <p class="buttons">${enrollmentButtons(device, [...(device.enrollment === "accepted" || device.enrollment === "revoked" ? [] : ["accept"]), ...(device.enrollment === "rejected" || device.enrollment === "revoked" ? [] : ["reject"]), "delete"])}</p>
  <dl class="facts">
    <dt>Enrollment</dt><dd>${badge(device.enrollment)} since ${when(device.enrolledAt)}</dd>
    <dt>Public key</dt><dd><code>${esc(device.publicKey)}</code></dd>
    <dt>Groups</dt><dd>${esc(device.groups.join(", ") || "—")}</dd><dt>Reported groups</dt><dd>${esc((device.reportedGroups ?? []).join(", ") || "—")}</dd><dt>Tags</dt><dd>${esc(device.tags.join(", ") || "—")}</dd>
    <dt>Architecture</dt><dd>${esc(device.architecture ?? "—")}</dd><dt>Agent</dt><dd>${esc(device.agentVersion ?? "—")}</dd>
    <dt>Last seen</dt><dd>${when(device.lastSeen)}</dd>
    <dt>Booted</dt><dd>${deployment(device.booted)}</dd><dt>Staged</dt><dd>${deployment(device.staged)}</dd>
    <dt>Pending</dt><dd>${deployment(device.pending)}</dd><dt>Rollback</dt><dd>${deployment(device.rollback)}</dd>
    <dt>Layered packages</dt><dd>${layering(device.booted?.layered)}</dd>
    <dt>Boot counter</dt><dd>${latest?.bootCounter ?? "—"}</dd>
  </dl>
  <h2>Rollbacks</h2>
  ${rollbacks.length ? `<ul>${rollbacks.map((e) => `<li>${when(e.at)}: ${deployment(e.report.rolledBack.from)} → ${deployment(e.report.rolledBack.to)}
    <p class="reason">${esc(e.report.rolledBack.reason)}</p>${healthList(e.report.health)}</li>`).join("")}</ul>` : "<p>None.</p>"}
  <h2>History</h2>
  <div class="scroll"><table><thead><tr><th>When</th><th>Event</th><th>Details</th></tr></thead><tbody>
  ${events.map((e) => `<tr><td>${when(e.at)}</td><td>${e.report ? badge(e.report.state) : esc(e.kind)}</td><td>
    ${e.report?.booted ? `booted ${deployment(e.report.booted)}` : ""}
    ${e.report?.progress ? ` · ${bytes(e.report.progress.bytes)} of ${bytes(e.report.progress.total)}` : ""}
    ${e.report?.bootCounter !== undefined && e.report?.bootCounter !== null ? ` · boot counter ${esc(e.report.bootCounter)}` : ""}
    ${e.report?.error ? `<p class="error">${esc(e.report.error)}</p>` : ""}
    ${e.report?.rolledBack ? `<p class="reason">rolled back: ${esc(e.report.rolledBack.reason)}</p>` : ""}
    ${healthList(e.report?.health)}</td></tr>`).join("")}
  </tbody></table></div>`;
  wireEnrollmentButtons();
}

// ---------------------------------------------------------------- rollouts

const SEGMENTS = [["pending", "pending"], ["inProgress", "progress"], ["healthy", "healthy"], ["failed", "failed"], ["rolledBack", "rolledBack"]];

function waveBar(wave) {
  const total = Math.max(1, wave.devices);
  const parts = SEGMENTS.map(([key, css]) => `<span class="p-${css}" data-width="${(wave[key] / total) * 100}"></span>`).join("");
  const text = `${wave.healthy} healthy, ${wave.inProgress} in progress, ${wave.pending} pending, ${wave.failed} failed, ${wave.rolledBack} rolled back of ${wave.devices}`;
  return `<tr><td>Wave ${wave.wave} (${wave.percent}%)</td><td><div class="progress" role="img" aria-label="${esc(text)}">${parts}</div></td><td>${esc(text)}</td></tr>`;
}

async function rolloutsPage() {
  const { rollouts } = await api("rollouts");
  const legend = `<p class="legend">${SEGMENTS.map(([key, css]) => `<span><i class="p-${css}"></i>${key === "inProgress" ? "in progress" : key === "rolledBack" ? "rolled back" : key}</span>`).join("")}</p>`;
  main.innerHTML = `<h1>Rollouts</h1>${legend}${rollouts.length ? "" : "<p>No rollouts yet: <code>apt-ostree-server rollout create</code>.</p>"}
  ${[...rollouts].reverse().map((r) => `<section class="card" data-rollout="${esc(r.id)}" aria-labelledby="r-${esc(r.id)}">
    <header><h2 id="r-${esc(r.id)}">${esc(r.ref)} → ${esc(r.version)} ${badge(r.progress.state)}</h2>
    <div class="actions">
      ${r.progress.state === "running" ? `<button data-action="pause" data-id="${esc(r.id)}">Pause</button>` : ""}
      ${r.progress.state === "paused" ? `<button data-action="resume" data-id="${esc(r.id)}">Resume</button>` : ""}
      ${["running", "paused"].includes(r.progress.state) ? `<button class="danger" data-action="abort" data-id="${esc(r.id)}">Abort</button>` : ""}
    </div></header>
    <p>Rollout <code>${esc(r.id)}</code>, commit ${short(r.commit)}, created ${when(r.createdAt)}; wave ${r.progress.currentWave + 1} of ${r.plan.waves.length};
    pauses above ${esc(r.plan.maxFailuresPercent)}% failures.</p>
    ${r.pauseReason ? `<p class="reason" role="alert">Paused: ${esc(r.pauseReason)}</p>` : ""}
    <div class="scroll"><table><tbody>${r.waves.map(waveBar).join("")}</tbody></table></div></section>`).join("")}`;
  for (const button of main.querySelectorAll("[data-action]")) {
    const { action, id } = button.dataset;
    button.addEventListener("click", () => act(`${action[0].toUpperCase()}${action.slice(1)} rollout ${id}?`, `rollouts/${encodeURIComponent(id)}/${action}`));
  }
}

// ---------------------------------------------------------------- releases

function packageChanges(release) {
  const diff = release.packageDiff;
  if (!diff) return "first version";
  const lines = [
    ...diff.upgraded.map((p) => `upgraded ${p.name} ${p.from} → ${p.to}`),
    ...diff.downgraded.map((p) => `downgraded ${p.name} ${p.from} → ${p.to}`),
    ...diff.removed.map((p) => `removed ${p.name} ${p.version}`),
    ...diff.added.map((p) => `added ${p.name} ${p.version}`),
  ];
  const summary = `since ${esc(release.previousVersion)}: ${diff.upgraded.length} upgraded, ${diff.downgraded.length} downgraded, ${diff.removed.length} removed, ${diff.added.length} added`;
  return lines.length ? `<details><summary>${summary}</summary><ul>${lines.map((l) => `<li>${esc(l)}</li>`).join("")}</ul></details>` : summary;
}

async function releasesPage() {
  const { releases } = await api("releases");
  main.innerHTML = `<h1>Releases</h1>${releases.length ? "" : "<p>Nothing published yet: <code>apt-ostree-server publish</code>.</p>"}
  <div class="scroll"><table><thead><tr><th>Ref</th><th>Channel</th><th>Version</th><th>Commit</th><th>Published</th><th>Upgrade paths (static delta size)</th><th>Packages since the previous version</th></tr></thead><tbody>
  ${releases.map((r) => `<tr><td>${esc(r.ref)}</td><td>${esc(r.channel)}</td><td>${esc(r.version)}</td><td>${short(r.commit)}</td><td>${when(r.issued)}</td>
    <td><ul>${r.deltas.map((d) => `<li>${d.from ? `from ${esc(d.fromVersion ?? d.from.slice(0, 12))}` : "from scratch"}: ${bytes(d.size)}</li>`).join("")}</ul>
    </td><td>${packageChanges(r)}</td></tr>`).join("")}
  </tbody></table></div>`;
}

// ---------------------------------------------------------------- wiring

/** Asks, calls the API, re-renders; true when the call succeeded. */
async function act(question, path, method = "POST") {
  if (!window.confirm(question)) return false;
  let done = false;
  try {
    await api(path, { method });
    done = true;
  } catch (error) {
    window.alert(error.message);
  }
  await render();
  return done;
}

async function render() {
  const hash = location.hash || "#/";
  for (const link of document.querySelectorAll("header nav a")) {
    const current = link.getAttribute("href") === hash || (hash.startsWith("#/devices/") && link.getAttribute("href") === "#/");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const focused = document.activeElement?.dataset?.filter;
  try {
    const device = /^#\/devices\/(.+)$/.exec(hash);
    if (device) await devicePage(decodeURIComponent(device[1]));
    else if (hash === "#/rollouts") await rolloutsPage();
    else if (hash === "#/releases") await releasesPage();
    else await fleetPage();
  } catch (error) {
    main.innerHTML = `<p class="error" role="alert">${esc(error.message)}</p>`;
  }
  // Widths set through the CSSOM: the page's CSP allows no inline style attributes.
  for (const element of main.querySelectorAll("[data-width]")) element.style.width = `${element.dataset.width}%`;
  if (focused) main.querySelector(`[data-filter="${focused}"]`)?.focus();
}

let pending = null;
function refreshSoon() {
  clearTimeout(pending);
  pending = setTimeout(render, 250);
}

const events = new EventSource("/api/v1/events");
events.addEventListener("open", () => (live.textContent = "live"));
events.addEventListener("error", () => (live.textContent = "reconnecting…"));
events.addEventListener("change", refreshSoon);
window.addEventListener("hashchange", () => {
  render();
  main.focus();
});
render();
