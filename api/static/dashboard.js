"use strict";
// The dashboard page: reads only this API's public endpoints, with the token from sessionStorage in headers.
(function () {
  const API = "/api/v1/engagement-dashboard/users/";
  const SUMMARY = "/api/v1/active-users/summary";
  const RETENTION = "/api/v1/active-users/retention";
  const STICKINESS = "/api/v1/active-users/stickiness";
  const BREAKDOWN = "/api/v1/active-users/breakdown";
  const PROPERTY = "platform";
  const OPENAPI = "/api/openapi.json";
  const COHORT_PERIODS = 12;
  const state = { zone: "UTC", days: { active: 30, new: 30, tod: 7, sticky: 30, platforms: 30 }, busyDay: null,
    timer: null, data: {}, segment: "" };
  const $ = (id) => document.getElementById(id);
  const charts = {};

  function creds() {
    const raw = sessionStorage.getItem("activeusers.credentials");
    return raw ? JSON.parse(raw) : null;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function get(path) {
    const c = creds();
    let response;
    try {
      response = await fetch(path, { headers: { "X-User-Id": c.user, "X-Auth-Token": c.token }, cache: "no-store" });
    } catch (e) {
      throw new ApiError(0, "The API cannot be reached.");
    }
    if (!response.ok) {
      let message = "HTTP " + response.status;
      try { const body = await response.json(); message = body.error || body.message || message; } catch (e) { /* keep */ }
      throw new ApiError(response.status, message);
    }
    signedInWith(response.headers.get("X-Auth-Source"));
    return response;
  }

  // Which kind of token the API accepted: one of ours, or a Rocket.Chat login or personal access token.
  const SOURCES = { "active-users": "an active-users token", "rocketchat": "a Rocket.Chat token" };
  function signedInWith(source) {
    const c = creds();
    if (!c || !SOURCES[source]) return;
    $("who").textContent = "Signed in as " + c.user + " with " + SOURCES[source];
    $("who").dataset.source = source;
  }

  const json = async (path) => (await get(path)).json();
  // The platform selected in the header restricts every panel whose endpoint takes a segment.
  const segmented = () => state.segment ? "&segment=" + encodeURIComponent(PROPERTY + ":" + state.segment) : "";

  // Calendar arithmetic in the deployment zone (not the browser's).
  function parts(ms) {
    const f = new Intl.DateTimeFormat("en-CA", { timeZone: state.zone, year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
    const p = {};
    for (const x of f.formatToParts(new Date(ms))) p[x.type] = x.value;
    return p;
  }
  function localDate(ms) { const p = parts(ms); return p.year + "-" + p.month + "-" + p.day; }
  function offset(ms) {
    const p = parts(ms);
    return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
  }
  function localMs(date, h, m, s, ms) {
    const [y, mo, d] = date.split("-").map(Number);
    const wall = Date.UTC(y, mo - 1, d, h, m, s, ms);
    let t = wall - offset(wall);
    t = wall - offset(t);
    return t;
  }
  function addDays(date, n) {
    const [y, m, d] = date.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
  }
  function range(n) {
    const today = localDate(Date.now());
    const first = addDays(today, 1 - n);
    return { first, today, start: new Date(localMs(first, 0, 0, 0, 0)).toISOString(),
      end: new Date(localMs(today, 23, 59, 59, 999)).toISOString() };
  }
  function dates(first, last) { const out = []; for (let d = first; d <= last; d = addDays(d, 1)) out.push(d); return out; }
  const key = (e) => e.year + "-" + String(e.month).padStart(2, "0") + "-" + String(e.day).padStart(2, "0");
  const dayMs = (d) => Date.UTC(+d.slice(0, 4), +d.slice(5, 7) - 1, +d.slice(8, 10)) / 1000;

  function status(panel, text) { panel.querySelector(".status").textContent = text || ""; }
  // Today is not over: its counts are shown "so far", and the change compares the last two whole days.
  function signedDelta(el, n, yesterday) {
    el.textContent = "yesterday " + yesterday + ", " + (n > 0 ? "+" : "") + n + " vs the day before";
    el.className = n > 0 ? "up" : n < 0 ? "down" : "";
    el.dataset.value = String(n);
  }

  function draw(id, el, x, series, bars) {
    el.dataset.chart = JSON.stringify({ x: x, series: series.map((s) => ({ label: s.label, values: s.values })) });
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    // A period without a single user gets the panel's empty-state text, not an empty chart.
    if (!series.some((s) => s.values.some((v) => v))) return;
    const colors = ["#1d74f5", "#f5455c", "#2de0a5", "#ffd21f", "#9b59b6", "#f38c39", "#158d65", "#6c727a"];
    const opts = { width: Math.max(el.clientWidth, 300), height: 220,
      scales: { x: { time: !bars } },
      axes: [bars ? { values: (u, v) => v.map((i) => x[i] === undefined ? "" : x[i]) } : {}, {}],
      series: [{}].concat(series.map((s, i) => ({ label: s.label, stroke: colors[i], width: 2,
        fill: bars ? colors[i] + "88" : undefined, paths: bars ? uPlot.paths.bars({ size: [0.7] }) : undefined }))) };
    const xs = bars ? x.map((_, i) => i) : x.map(dayMs);
    charts[id] = new uPlot(opts, [xs].concat(series.map((s) => s.values)), el);
  }

  function downloadText(name, text) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
  }
  const csv = (rows) => rows.map((r) => r.join(",")).join("\r\n") + "\r\n";

  async function loadActive() {
    const panel = $("active"); const r = range(state.days.active);
    const q = "?start=" + r.start + "&end=" + r.end + segmented();
    const s = await json(SUMMARY + q);
    state.zone = s.timezone;
    $("zone").textContent = "Time zone: " + s.timezone;
    const rows = s.days;
    state.data.active = { query: q, first: r.first, today: r.today };
    const last = rows[rows.length - 1], whole = rows[rows.length - 2], before = rows[rows.length - 3];
    for (const k of ["dau", "wau", "mau"]) {
      const v = last ? last[k] : 0, y = whole ? whole[k] : 0;
      $(k).textContent = String(v); $(k).dataset.value = String(v);
      signedDelta($(k + "-change"), y - (before ? before[k] : 0), y);
    }
    const x = rows.map((d) => d.date);
    draw("active", panel.querySelector(".chart"), x, [
      { label: "DAU", values: rows.map((d) => d.dau) }, { label: "WAU", values: rows.map((d) => d.wau) },
      { label: "MAU", values: rows.map((d) => d.mau) }], false);
    status(panel, rows.some((d) => d.dau) ? "" : "No active users in this period yet.");
  }

  async function loadNew() {
    const panel = $("new"); const r = range(state.days.new);
    const a = await json(API + "new-users?start=" + r.start + "&end=" + r.end);
    const per = {};
    for (const d of a.days) per[localDate(Date.parse(d.day) + 12 * 3600000)] = d.users;
    const x = dates(r.first, r.today);
    const values = x.map((d) => per[d] || 0);
    $("new-count").textContent = String(a.period.count); $("new-count").dataset.value = String(a.period.count);
    const v = $("new-variation");
    v.textContent = (a.period.variation > 0 ? "+" : "") + a.period.variation + " vs the previous period";
    v.dataset.value = String(a.period.variation);
    state.data.new = [["date", "new_users"]].concat(x.map((d, i) => [d, values[i]]));
    draw("new", panel.querySelector(".chart"), x, [{ label: "New users", values: values }], true);
    status(panel, a.period.count ? "" : "No new users in this period.");
  }

  async function loadTod() {
    const panel = $("tod"); const r = range(state.days.tod);
    const a = await json(API + "users-by-time-of-the-day-in-a-week?start=" + r.start + "&end=" + new Date().toISOString());
    const cells = {};
    let max = 0;
    for (const e of a.week) { cells[key(e) + "T" + e.hour] = e.users; max = Math.max(max, e.users); }
    const x = dates(r.first, r.today);
    const heat = panel.querySelector(".heat");
    heat.replaceChildren();
    const grid = [];
    // The first column names the hours (rows), the first row the days (columns).
    if (max) {
      heat.appendChild(label("hour", ""));
      for (let h = 0; h < 24; h++) heat.appendChild(label(String(h).padStart(2, "0") + ":00", ""));
    }
    for (const d of x) {
      if (max) heat.appendChild(label(d.slice(5), "day"));
      const col = [];
      for (let h = 0; h < 24; h++) {
        const n = cells[d + "T" + h] || 0; col.push(n);
        if (!max) continue;
        const c = document.createElement("div");
        c.className = "l" + (n ? Math.ceil((4 * n) / max) : 0);
        c.title = d + " " + String(h).padStart(2, "0") + ":00 - " + n + " users";
        heat.appendChild(c);
      }
      grid.push(col);
    }
    heat.dataset.chart = JSON.stringify({ x: x, hours: grid });
    state.data.tod = [["date", "hour", "users"]];
    x.forEach((d, i) => grid[i].forEach((n, h) => state.data.tod.push([d, h, n])));
    status(panel, max ? "" : "No active users in this period yet.");
  }

  function label(textContent, className) {
    const e = document.createElement("span");
    e.textContent = textContent; e.className = className;
    return e;
  }

  // The first day of the period ``count`` periods before the one holding ``date``.
  function periodStart(date, period, count) {
    if (period === "day") return addDays(date, -count);
    if (period === "week") return addDays(date, -((new Date(date + "T00:00:00Z").getUTCDay() + 6) % 7) - 7 * count);
    const [y, m] = date.split("-").map(Number);
    const back = new Date(Date.UTC(y, m - 1 - count, 1));
    return back.toISOString().slice(0, 10);
  }

  async function loadRetention() {
    const panel = $("retention");
    const period = $("retention-period").value, cohort = $("retention-cohort").value;
    const today = localDate(Date.now());
    const first = periodStart(today, period, COHORT_PERIODS - 1);
    const q = "?start=" + new Date(localMs(first, 0, 0, 0, 0)).toISOString() + "&end="
      + new Date(localMs(today, 23, 59, 59, 999)).toISOString() + "&period=" + period + "&cohort=" + cohort
      + "&periods=" + COHORT_PERIODS + segmented();
    const a = await json(RETENTION + q);
    state.data.retention = { query: q };
    const table = panel.querySelector("table");
    table.dataset.chart = JSON.stringify(a.cohorts);
    const width = Math.max(0, ...a.cohorts.map((c) => c.returned.length));
    const head = document.createElement("tr");
    for (const name of ["Cohort", "Users"].concat([...Array(width).keys()].map((k) => period + " " + k))) {
      const th = document.createElement("th"); th.textContent = name; head.appendChild(th);
    }
    const rows = [head];
    for (const c of a.cohorts) {
      const tr = document.createElement("tr");
      for (const v of [c.start, String(c.size)]) { const th = document.createElement("th"); th.textContent = v; tr.appendChild(th); }
      for (let k = 0; k < width; k++) {
        const td = document.createElement("td");
        if (k < c.returned.length) {
          const share = c.size ? c.returned[k] / c.size : 0;
          td.innerHTML = c.returned[k] + " <small>" + Math.round(100 * share) + "%</small>";
          td.style.background = "rgba(29,116,245," + (0.08 + 0.8 * share).toFixed(2) + ")";
          td.style.color = share > 0.55 ? "#fff" : "";
        }
        tr.appendChild(td);
      }
      rows.push(tr);
    }
    table.replaceChildren(...rows);
    status(panel, a.cohorts.some((c) => c.size) ? "" : "No cohort has members in this range.");
  }

  async function loadSticky() {
    const panel = $("sticky"); const r = range(state.days.sticky);
    const q = "?start=" + r.start + "&end=" + r.end + segmented();
    const a = await json(STICKINESS + q);
    state.data.sticky = { query: q };
    const x = a.activeDays.map((_, i) => String(i + 1));
    draw("sticky", panel.querySelector(".chart"), x, [{ label: "Users active on exactly this many days", values: a.activeDays }], true);
    status(panel, a.distinctUsers ? "" : "No active users in this period yet.");
  }

  // Whether the deployment indexes the platform property (SEGMENT_PROPERTIES): the API's own description lists the
  // breakdown's properties. Read once; a deployment without it gets a line of text, not the API's 400.
  let indexed = null;
  async function platformIndexed() {
    if (indexed === null) {
      const doc = await json(OPENAPI);
      const found = doc.paths[BREAKDOWN].get.parameters.find((p) => p.name === "property");
      indexed = (found && found.schema.enum) || [];
    }
    return indexed.includes(PROPERTY);
  }

  async function loadPlatforms() {
    const panel = $("platforms"); const r = range(state.days.platforms);
    const shown = await platformIndexed();
    panel.querySelector(".csv").hidden = !shown; $("segment-label").hidden = !shown;
    if (!shown) {
      draw("platforms", panel.querySelector(".chart"), dates(r.first, r.today), [], false);
      status(panel, "Platforms are not indexed here (SEGMENT_PROPERTIES does not name platform).");
      return;
    }
    const q = "?start=" + r.start + "&end=" + r.end + "&property=" + PROPERTY;
    const a = await json(BREAKDOWN + q);
    state.data.platforms = { query: q };
    const x = a.values.length ? a.values[0].days.map((d) => d.date) : dates(r.first, r.today);
    draw("platforms", panel.querySelector(".chart"), x, a.values.map((v) => ({ label: v.value + " (" + v.distinctUsers + ")",
      values: v.days.map((d) => d.dau) })), false);
    choices(a.values.map((v) => v.value));
    status(panel, a.values.length ? "" : "No platform reported in this period yet.");
  }

  // The header's platform choices: every value a breakdown has shown, the selected one kept.
  function choices(values) {
    const select = $("segment");
    const known = new Set([...select.options].map((o) => o.value));
    for (const v of values) {
      if (known.has(v)) continue;
      const o = document.createElement("option"); o.value = v; o.textContent = v; select.appendChild(o);
    }
  }

  async function loadBusy() {
    const panel = $("busy");
    const day = state.busyDay || localDate(Date.now());
    $("busy-day").value = day;
    const at = new Date(localMs(day, 23, 59, 59, 999)).toISOString();
    const [h, w] = await Promise.all([json(API + "chat-busier/hourly-data?start=" + at),
      json(API + "chat-busier/weekly-data?start=" + at)]);
    const slots = h.hours.slice().reverse();
    const hx = slots.map((s) => String(s.hour).padStart(2, "0") + "-" + String(s.hour + 2).padStart(2, "0"));
    draw("busyh", $("busy-hours"), hx, [{ label: "Users per 2 hours", values: slots.map((s) => s.users) }], true);
    const per = {};
    for (const e of w.month) per[key(e)] = e.users;
    const wx = dates(addDays(day, -7), day);
    draw("busyw", $("busy-week"), wx, [{ label: "Users per day", values: wx.map((d) => per[d] || 0) }], true);
    state.data.busy = [["slot_or_day", "users"]].concat(slots.map((s, i) => [day + " " + hx[i], s.users]),
      wx.map((d) => [d, per[d] || 0]));
    status(panel, slots.length ? "" : "No active users on " + day + ".");
  }

  const loaders = { active: loadActive, new: loadNew, tod: loadTod, busy: loadBusy, retention: loadRetention,
    sticky: loadSticky, platforms: loadPlatforms };

  async function load(name) {
    const panel = $(name);
    try {
      await loaders[name]();
      panel.dataset.loaded = String(Date.now());
    } catch (e) {
      if (e.status === 401 || e.status === 403) { signOut(e.message); return; }
      status(panel, e.message);
      panel.dataset.loaded = "error";
    }
  }

  async function refresh() {
    await load("active");
    if (!creds()) return;  // a 401/403 signed out: the other panels would only fail the same way
    await Promise.all(["new", "tod", "busy", "retention", "sticky", "platforms"].map(load));
    if (creds()) $("asof").textContent = "as of " + parts(Date.now()).hour + ":" + parts(Date.now()).minute + ":" + parts(Date.now()).second;
  }

  function signOut(message) {
    sessionStorage.removeItem("activeusers.credentials");
    if (state.timer) { clearInterval(state.timer); state.timer = null; }
    $("live").checked = false;
    $("panels").hidden = true; $("signout").hidden = true; $("live-label").hidden = true; $("segment-label").hidden = true;
    $("who").textContent = ""; $("who").dataset.source = "";
    $("signin").hidden = false; $("signin-error").textContent = message || "";
  }

  function show() {
    $("signin").hidden = true; $("panels").hidden = false; $("signout").hidden = false; $("live-label").hidden = false;
    refresh();
  }

  function presets() {
    for (const box of document.querySelectorAll(".presets")) {
      const name = box.dataset.panel;
      for (const n of [7, 30, 90]) {
        const b = document.createElement("button");
        b.textContent = n + " days"; b.dataset.days = String(n);
        b.className = state.days[name] === n ? "on" : "";
        b.addEventListener("click", () => {
          state.days[name] = n;
          for (const o of box.children) o.className = o === b ? "on" : "";
          load(name);
        });
        box.appendChild(b);
      }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    presets();
    $("signin").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("activeusers.credentials", JSON.stringify({ user: $("user-id").value, token: $("token").value }));
      $("token").value = "";
      show();
    });
    $("signout").addEventListener("click", () => signOut(""));
    $("live").addEventListener("change", () => {
      if ($("live").checked) state.timer = setInterval(refresh, 5000);
      else { clearInterval(state.timer); state.timer = null; }
    });
    $("busy-day").addEventListener("change", () => { state.busyDay = $("busy-day").value; load("busy"); });
    $("busy-prev").addEventListener("click", () => { state.busyDay = addDays($("busy-day").value, -1); load("busy"); });
    $("busy-next").addEventListener("click", () => { state.busyDay = addDays($("busy-day").value, 1); load("busy"); });
    // These panels' CSV is the server's own (format=csv of the query shown).
    for (const [name, path, file] of [["active", SUMMARY, "active-users.csv"], ["retention", RETENTION, "retention.csv"],
      ["sticky", STICKINESS, "stickiness.csv"], ["platforms", BREAKDOWN, "platforms.csv"]]) {
      $(name).querySelector(".csv").addEventListener("click", async () => {
        try { downloadText(file, await (await get(path + state.data[name].query + "&format=csv")).text()); }
        catch (e) { status($(name), e.message); }
      });
    }
    for (const id of ["retention-period", "retention-cohort"]) $(id).addEventListener("change", () => load("retention"));
    $("segment").addEventListener("change", () => {
      state.segment = $("segment").value;
      for (const name of ["active", "retention", "sticky"]) load(name);
    });
    for (const name of ["new", "tod", "busy"]) {
      $(name).querySelector(".csv").addEventListener("click", () => downloadText(name + ".csv", csv(state.data[name] || [])));
    }
    if (creds()) show();
  });
})();
