// The fleet dashboard: reads the public fleet API, redraws on every change-feed notice.
// Plain browser JavaScript (no build step, no library); every value from the API is
// shown through textContent, never parsed as HTML.
"use strict";

(() => {
  const API = "/fleet/v1/";
  const EVENTS_PER_UNIT = 50;
  const data = { machines: [], units: [], states: [], lastEvents: new Map() };
  let refreshing = null;
  let again = false;

  const $ = (id) => document.getElementById(id);

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function getJSON(path) {
    const response = await fetch(API + path, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        message = (await response.json()).error.message || message;
      } catch (_) { /* not fleet's envelope */ }
      throw new HttpError(response.status, message);
    }
    return response.json();
  }

  async function pages(path, key) {
    let items = [];
    let token = "";
    for (let page = 0; page < 10000; page++) {
      const sep = path.includes("?") ? "&" : "?";
      const body = await getJSON(path + (token ? `${sep}nextPageToken=${encodeURIComponent(token)}` : ""));
      items = items.concat(body[key] || []);
      token = body.nextPageToken;
      if (!token) break;
    }
    return items;
  }

  // The events API may be missing (an older fleetd): null means "no events to show".
  async function events(query) {
    try {
      return (await getJSON(`events?${query}`)).events || [];
    } catch (error) {
      if (error instanceof HttpError && (error.status === 404 || error.status === 405)) return null;
      throw error;
    }
  }

  function el(tag, options = {}, ...children) {
    const node = document.createElement(tag);
    if (options.text !== undefined) node.textContent = options.text;
    if (options.cls) node.className = options.cls;
    if (options.href) node.href = options.href;
    if (options.title) node.title = options.title;
    if (options.label) node.dataset.label = options.label;
    for (const [k, v] of Object.entries(options.data || {})) node.dataset[k] = v;
    for (const child of children) if (child) node.append(child);
    return node;
  }

  const short = (id) => (id || "").slice(0, 8);
  const badge = (text) => el("span", { cls: `state ${text || "none"}`, text: text || "-" });
  const machineById = () => new Map(data.machines.map((m) => [m.id, m]));

  function eventTime(event) {
    const t = event.time;
    if (typeof t === "number") return new Date(t * 1000).toLocaleString();
    const parsed = Date.parse(t);
    return Number.isNaN(parsed) ? String(t || "") : new Date(parsed).toLocaleString();
  }

  function eventText(event) {
    const parts = [event.kind, event.message, event.reason, event.result].filter((x) => x);
    return parts.join(" · ");
  }

  function machineLabel(id, machines) {
    if (!id) return el("span", { cls: "muted", text: "-" });
    const m = machines.get(id);
    const text = m && m.primaryIP ? `${short(id)} ${m.primaryIP}` : short(id);
    return el("span", { cls: "id", text, title: id });
  }

  function statesOf(name) {
    return data.states.filter((s) => s.name === name);
  }

  // One word for a unit's systemd state: active only when every machine says so.
  function activeOf(states) {
    if (!states.length) return "";
    const notActive = states.find((s) => s.systemdActiveState !== "active");
    return notActive ? notActive.systemdActiveState || "unknown" : "active";
  }

  function renderMachines() {
    const body = $("machines").tBodies[0];
    const counts = new Map();
    const count = (id, name) => {
      if (!id) return;
      if (!counts.has(id)) counts.set(id, new Set());
      counts.get(id).add(name);
    };
    for (const u of data.units) count(u.machineID, u.name);
    for (const s of data.states) count(s.machineID, s.name);
    const rows = data.machines.map((m) => {
      const status = m.cordoned ? "cordoned" : "ready";
      const meta = el("td", { label: "Metadata" });
      for (const [k, v] of Object.entries(m.metadata || {}).sort()) meta.append(el("span", { cls: "meta", text: `${k}=${v}` }));
      if (!meta.childNodes.length) meta.append(el("span", { cls: "muted", text: "-" }));
      return el("tr", { data: { machine: m.id, status } },
        el("td", { label: "Machine" }, el("span", { cls: "id", text: m.id })),
        el("td", { label: "IP" }, el("span", { cls: "mono", text: m.primaryIP || "-" })),
        el("td", { label: "Status", title: m.cordonReason || "" }, badge(status),
          m.cordonReason ? el("span", { cls: "muted", text: ` ${m.cordonReason}` }) : null),
        el("td", { label: "Units", cls: "units", text: String((counts.get(m.id) || new Set()).size) }),
        meta);
    });
    body.replaceChildren(...rows);
    $("machine-count").textContent = `(${data.machines.length})`;
    $("machines-empty").hidden = data.machines.length > 0;
  }

  function renderUnits() {
    const body = $("units").tBodies[0];
    const machines = machineById();
    const rows = data.units.map((u) => {
      const states = statesOf(u.name);
      const active = activeOf(states);
      const sub = states.length === 1 ? states[0].systemdSubState : "";
      const where = el("td", { label: "Machine" });
      if (u.machineID) where.append(machineLabel(u.machineID, machines));
      else if (states.length) where.append(el("span", { text: `${states.length} machines (global)` }));
      else where.append(el("span", { cls: "muted", text: "-" }));
      const last = data.lastEvents.get(u.name);
      return el("tr", { data: { unit: u.name, active, current: u.currentState || "" } },
        el("td", { label: "Unit" }, el("a", { href: `#/unit/${encodeURIComponent(u.name)}`, text: u.name })),
        el("td", { label: "Desired" }, badge(u.desiredState)),
        el("td", { label: "Current" }, badge(u.currentState)),
        el("td", { label: "Active", cls: "active" }, badge(active), sub ? el("span", { cls: "muted", text: ` ${sub}` }) : null),
        where,
        el("td", { label: "Reason", cls: "reason", text: u.reason || u.failure || "" }),
        el("td", { label: "Last event", cls: "muted", text: last ? `${eventTime(last)} ${eventText(last)}` : "" }));
    });
    body.replaceChildren(...rows);
    $("unit-count").textContent = `(${data.units.length})`;
    $("units-empty").hidden = data.units.length > 0;
    const active = data.units.filter((u) => activeOf(statesOf(u.name)) === "active").length;
    $("summary").textContent = `${data.machines.length} machines · ${data.units.length} units · ${active} active`;
  }

  function unitFileText(options) {
    const sections = new Map();
    for (const o of options || []) {
      if (!sections.has(o.section)) sections.set(o.section, []);
      sections.get(o.section).push(`${o.name}=${o.value}`);
    }
    return [...sections].map(([name, lines]) => `[${name}]\n${lines.join("\n")}`).join("\n\n");
  }

  async function renderUnitPage(name) {
    $("unit-name").textContent = name;
    let unit = null;
    try {
      unit = await getJSON(`units/${encodeURIComponent(name)}`);
    } catch (error) {
      if (!(error instanceof HttpError && error.status === 404)) throw error;
    }
    const found = await events(`unit=${encodeURIComponent(name)}&limit=${EVENTS_PER_UNIT}`);
    if (currentUnit() !== name) return; // the user went elsewhere meanwhile
    $("unit-missing").hidden = unit !== null;
    const machines = machineById();
    const facts = $("unit-facts");
    const rows = [];
    if (unit) {
      const fact = (term, value) => rows.push(el("dt", { text: term }), el("dd", {}, value));
      fact("Desired state", badge(unit.desiredState));
      fact("Current state", badge(unit.currentState));
      fact("Machine", machineLabel(unit.machineID, machines));
      if (unit.reason) fact("Reason", el("span", { cls: "reason", text: unit.reason }));
      if (unit.failure) fact("Failure", el("span", { cls: "reason", text: unit.failure }));
    }
    facts.replaceChildren(...rows);
    const stateRows = statesOf(name).map((s) => el("tr", { data: { machine: s.machineID, active: s.systemdActiveState || "" } },
      el("td", { label: "Machine" }, machineLabel(s.machineID, machines)),
      el("td", { label: "Load", text: s.systemdLoadState || "-" }),
      el("td", { label: "Active" }, badge(s.systemdActiveState)),
      el("td", { label: "Sub", text: s.systemdSubState || "-" }),
      el("td", { label: "Result", text: [s.systemdResult, s.startJobResult, s.error].filter((x) => x).join(" · ") || "-" })));
    $("unit-states").tBodies[0].replaceChildren(...stateRows);
    $("unit-states").parentElement.hidden = stateRows.length === 0;
    $("unit-states-empty").hidden = stateRows.length > 0;
    const list = $("unit-events");
    if (!found || !found.length) {
      list.replaceChildren(el("li", { cls: "muted", text: "no events" }));
    } else {
      const newest = [...found].sort((a, b) => (b.id || 0) - (a.id || 0) || (String(b.time) > String(a.time) ? 1 : -1));
      list.replaceChildren(...newest.map((e) => el("li", {},
        el("span", { cls: "when", text: eventTime(e) }),
        el("span", { text: eventText(e) }),
        e.machine ? el("span", { cls: "muted id", text: ` on ${short(e.machine)}` }) : null)));
    }
    $("unit-file").textContent = unit ? unitFileText(unit.options) : "";
  }

  function currentUnit() {
    const match = location.hash.match(/^#\/unit\/(.+)$/);
    return match ? decodeURIComponent(match[1]) : null;
  }

  function lastEventsByUnit(list) {
    const last = new Map();
    for (const e of list || []) {
      const seen = last.get(e.unit);
      if (!seen || (e.id || 0) > (seen.id || 0)) last.set(e.unit, e);
    }
    return last;
  }

  async function load() {
    const [machines, units, states, recent] = await Promise.all([
      pages("machines", "machines"),
      pages("units", "units"),
      pages("state", "states"),
      events("limit=200"),
    ]);
    data.machines = machines.sort((a, b) => a.id.localeCompare(b.id));
    data.units = units.sort((a, b) => a.name.localeCompare(b.name));
    data.states = states;
    data.lastEvents = lastEventsByUnit(recent);
    renderMachines();
    renderUnits();
    const name = currentUnit();
    $("overview").hidden = name !== null;
    $("unit").hidden = name === null;
    if (name !== null) await renderUnitPage(name);
    $("error").hidden = true;
    document.body.dataset.revision = String((Number(document.body.dataset.revision) || 0) + 1);
  }

  // Notices can come faster than listings are read: one read at a time, one more after.
  function refresh() {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = load()
      .catch((error) => {
        $("error").textContent = `Cannot read the fleet API: ${error.message}`;
        $("error").hidden = false;
      })
      .finally(() => {
        refreshing = null;
        if (again) {
          again = false;
          refresh();
        }
      });
    return refreshing;
  }

  function live(state, text) {
    $("live").dataset.state = state;
    $("live").textContent = text;
  }

  function follow() {
    if (!window.EventSource) {
      live("offline", "no live updates in this browser");
      return;
    }
    const feed = new EventSource(`${API}watch?topics=units,machines`);
    // "ready" also follows every reconnection: read everything again then.
    feed.addEventListener("ready", () => {
      live("live", "live");
      refresh();
    });
    feed.addEventListener("changed", () => refresh());
    feed.onerror = () => live("offline", "reconnecting");
  }

  window.addEventListener("hashchange", () => refresh());
  refresh();
  follow();
})();
