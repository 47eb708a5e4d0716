// patient-twin viewer: a page over the v1 API (no second backend, no build step).
// The API key lives in this script's memory only (never localStorage, sessionStorage, cookies or
// URLs); every request carries it as `Authorization: Bearer`. Patient ids travel in API paths only.
"use strict";

(() => {
  const DAY_MS = 86400000;
  const state = {
    key: null, models: [], patientId: null, summary: null, nodes: [], asOf: null,
    forecast: null, scenario: null,
  };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "style") Object.assign(e.style, v);  // CSSOM, allowed by the page's CSP
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const fmt = (v) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(3));
  const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + " %");
  const isoDay = (t) => (t ? new Date(t).toISOString().slice(0, 10) : "–");
  const named = (display, code) => (display ? (code ? `${display} (${code})` : display) : (code || "?"));

  function showMessage(text, kind) {
    const box = $("message");
    box.textContent = text;
    box.className = kind || "error";
    box.hidden = !text;
  }
  const clearMessage = () => showMessage("");

  function busy(button, on) {
    button.disabled = on;
    button.classList.toggle("busy", on);
  }

  // ------------------------------------------------------------------ the API
  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || `the service answered ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.key}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" });
    } catch (exc) {
      throw new ApiError(0, { detail: "the service cannot be reached; is `twin serve` running?" });
    }
    const doc = await r.json().catch(() => null);
    if (!r.ok) throw new ApiError(r.status, doc);
    return doc;
  }

  /** A problem document as one sentence a person can act on. */
  function explain(exc, what) {
    if (!(exc instanceof ApiError)) return `${what} failed: ${exc.message}`;
    const p = exc.problem;
    let text = `${what} failed: ${exc.message}`;
    if (exc.status === 401) text = `Sign-in failed: ${exc.message}. Check the key and sign in again.`;
    if (exc.status === 403) text = `${what} is not allowed: ${exc.message}.`;
    if (p.plan) {
      const where = [p.plan.plan && `plan '${p.plan.plan}'`, p.plan.field].filter(Boolean).join(", ");
      text = `${what} failed: the model cannot simulate ${where || "this plan"}: ${p.plan.reason}`;
    }
    if (p.errors && p.errors.length) {
      text += " (" + p.errors.map((e) => `${e.field}: ${e.message}`).join("; ") + ")";
    }
    return text;
  }

  // ------------------------------------------------------------------ sign-in
  async function signIn(ev) {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) { showMessage("Enter an API key to sign in."); return; }
    state.key = key;
    busy($("signin"), true);
    try {
      const doc = await api("GET", "/v1/models");
      state.models = doc.models;
      $("api-key").value = "";
      clearMessage();
      enterApp();
    } catch (exc) {
      state.key = null;
      showMessage(explain(exc, "Sign-in"));
    } finally {
      busy($("signin"), false);
    }
  }

  function enterApp() {
    $("signin-view").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
    $("whoami").textContent = `signed in · ${state.models.length} model(s)`;
    const select = $("model");
    select.replaceChildren(...state.models.map((m) => el("option", { value: m.name, text: m.name })));
    drawTargets();
    if (!state.models.length) showMessage("No trained model yet: train one (twin train) to forecast.", "info");
    $("terms").replaceChildren(termRow());
  }

  function signOut() {
    state.key = null;
    state.patientId = null;
    location.reload();
  }

  // ------------------------------------------------------------------ cohort predicate
  const TERM_KINDS = {
    condition: { label: "has condition", fields: [["code", "SNOMED/ICD code", 14]] },
    lab: { label: "lab value", fields: [["code", "LOINC code", 10], ["op", null, 0], ["value", "value", 7]] },
    medication: { label: "on medication", fields: [["code", "RxNorm code", 12]] },
    variant: { label: "carries a variant in", fields: [["code", "gene symbol", 10]] },
  };

  function termRow() {
    const kind = el("select", { class: "term-kind" },
      Object.entries(TERM_KINDS).map(([k, d]) => el("option", { value: k, text: d.label })));
    const fields = el("span", { class: "term-fields" });
    const draw = () => {
      fields.replaceChildren(...TERM_KINDS[kind.value].fields.map(([name, ph, size]) => name === "op"
        ? el("select", { class: "term-op" }, [">", ">=", "<", "<=", "="].map((o) => el("option", { value: o, text: o })))
        : el("input", { class: `term-${name}`, placeholder: ph, size, spellcheck: "false" })));
    };
    kind.addEventListener("change", draw);
    draw();
    return el("div", { class: "term" }, kind, fields,
      el("button", { type: "button", class: "remove", text: "×", title: "remove",
        onclick: (e) => { if ($("terms").children.length > 1) e.target.parentElement.remove(); } }));
  }

  function predicate() {
    const terms = [...$("terms").children].map((row) => {
      const kind = row.querySelector(".term-kind").value;
      const code = row.querySelector(".term-code").value.trim();
      if (!code) throw new Error(`the ${TERM_KINDS[kind].label} condition needs a code`);
      if (kind === "condition") return { has_condition: code };
      if (kind === "medication") return { on_medication: code };
      if (kind === "variant") return { carries_variant_in: code };
      const value = Number(row.querySelector(".term-value").value);
      if (row.querySelector(".term-value").value.trim() === "" || !Number.isFinite(value)) {
        throw new Error(`the lab condition on ${code} needs a numeric value`);
      }
      return { lab: code, op: row.querySelector(".term-op").value, value };
    });
    return terms.length === 1 ? terms[0] : { all: terms };
  }

  async function findPatients(ev) {
    ev.preventDefault();
    let body;
    try { body = { predicate: predicate() }; } catch (exc) { showMessage(`Cohort query: ${exc.message}.`); return; }
    busy($("find"), true);
    try {
      const doc = await api("POST", "/v1/query", body);
      clearMessage();
      const out = $("cohort-result");
      if (!doc.count) { out.replaceChildren(el("p", { text: "No patient matches." })); return; }
      out.replaceChildren(el("p", { text: `${doc.count} patient(s) match:` }),
        el("ul", { class: "cohort" }, doc.patient_ids.map((pid) => el("li", {},
          el("button", { type: "button", class: "pick", "data-patient": pid, text: pid,
            onclick: () => openPatient(pid) })))));
    } catch (exc) {
      showMessage(explain(exc, "Cohort query"));
    } finally {
      busy($("find"), false);
    }
  }

  // ------------------------------------------------------------------ patient and timeline
  async function openPatient(pid) {
    pid = pid.trim();
    if (!pid) return;
    try {
      const summary = await api("GET", `/v1/patients/${encodeURIComponent(pid)}`);
      clearMessage();
      state.patientId = pid;
      state.summary = summary;
      state.asOf = null;
      state.forecast = null;
      $("asof").value = $("asof").max;
      $("patient-title").textContent = pid;
      const p = summary.patient ? summary.patient.props : {};
      const counts = Object.entries(summary.counts).map(([t, c]) => `${c} ${t}`).join(", ");
      $("patient-summary").textContent = [p.sex, p.birth_date && `born ${p.birth_date}`,
        `records ${isoDay(summary.first_record)} to ${isoDay(summary.last_record)}`, counts]
        .filter(Boolean).join(" · ");
      for (const id of ["patient-view", "forecast-view", "scenario-view"]) $(id).hidden = false;
      $("forecast").replaceChildren();
      $("scenario").replaceChildren();
      drawPlans();
      await loadTimeline();
    } catch (exc) {
      showMessage(explain(exc, `Opening patient '${pid}'`));
    }
  }

  function asOfFromSlider() {
    const s = state.summary;
    const t0 = Date.parse(s.first_record), t1 = Date.parse(s.last_record);
    const v = Number($("asof").value), max = Number($("asof").max);
    if (v >= max) return null;
    return new Date(t0 + (t1 - t0) * v / max);
  }

  async function loadTimeline() {
    const asOf = asOfFromSlider();
    state.asOf = asOf;
    $("asof-label").textContent = asOf ? asOf.toISOString().slice(0, 16).replace("T", " ") : "latest record";
    $("asof-label").dataset.asOf = asOf ? asOf.toISOString() : "";
    const q = asOf ? `?as_of=${encodeURIComponent(asOf.toISOString())}` : "";
    try {
      const doc = await api("GET", `/v1/patients/${encodeURIComponent(state.patientId)}/timeline${q}`);
      state.nodes = doc.nodes;
      drawTimeline();
    } catch (exc) {
      showMessage(explain(exc, "Loading the timeline"));
    }
  }

  function span() {
    const s = state.summary;
    const t0 = Date.parse(s.first_record), t1 = Date.parse(s.last_record);
    return [t0 - DAY_MS, Math.max(t1, t0) + DAY_MS];
  }

  /** A horizontal track of bars (from time to end) and marks (instants) over the patient's span. */
  function track(title, items) {
    const [t0, t1] = span();
    const x = (t) => Math.min(100, Math.max(0, 100 * (t - t0) / (t1 - t0)));
    const lane = el("div", { class: "lane" }, items.map((n) => {
      const a = Date.parse(n.time);
      const b = n.end ? Date.parse(n.end) : null;
      const label = named(n.display, n.code);
      const tip = `${label} · ${isoDay(n.time)}${n.end ? " to " + isoDay(n.end) : ""}` +
        (n.value !== null && n.value !== undefined ? ` · ${n.value} ${n.unit || ""}` : "");
      if (b !== null || n.type === "Medication") {
        const end = b !== null ? b : (state.asOf ? state.asOf.getTime() : t1);
        return el("div", { class: `bar ${n.type.toLowerCase()}`, title: tip, "data-node": n.id,
          style: { left: `${x(a)}%`, width: `${Math.max(0.6, x(end) - x(a))}%` } }, el("span", { text: label }));
      }
      return el("div", { class: `mark ${n.type.toLowerCase()}`, title: tip, "data-node": n.id, style: { left: `${x(a)}%` } });
    }));
    return el("div", { class: "track" }, el("div", { class: "track-title", text: `${title} (${items.length})` }), lane);
  }

  function drawTimeline() {
    const nodes = state.nodes.filter((n) => n.time);
    const byType = (t) => nodes.filter((n) => n.type === t);
    const out = $("timeline");
    const [t0, t1] = span();
    const labs = new Map();
    for (const n of byType("Lab")) {
      if (n.value === null || n.value === undefined) continue;
      if (!labs.has(n.code)) labs.set(n.code, { name: n.display, unit: n.unit, pts: [] });
      labs.get(n.code).pts.push([Date.parse(n.time) / 1000, n.value]);
    }
    const grid = el("div", { class: "multiples" });
    const parts = [
      el("div", { class: "axis muted" }, el("span", { text: isoDay(t0) }), el("span", { text: isoDay(t1) })),
      track("Medications", byType("Medication")),
      track("Procedures", byType("Procedure")),
      track("Conditions", byType("Condition")),
      track("Encounters", byType("Encounter")),
      imagesRow(byType("Image")),
      variantsList(state.nodes.filter((n) => n.type === "Variant")),
      el("h4", { text: `Labs (${labs.size})` }), grid,
    ];
    out.replaceChildren(...parts);
    for (const [code, lab] of [...labs.entries()].sort((a, b) => (a[1].name || a[0]).localeCompare(b[1].name || b[0]))) {
      const cell = el("div", { class: "multiple", "data-lab": code },
        el("div", { class: "chart-title", title: named(lab.name, code), text: `${lab.name || code} (${lab.unit || ""})` }));
      grid.append(cell);
      const xs = lab.pts.map((p) => p[0]), ys = lab.pts.map((p) => p[1]);
      new uPlot({ width: 300, height: 130, legend: { show: false }, cursor: { show: false },
        scales: { x: { time: true, min: t0 / 1000, max: t1 / 1000 } },
        axes: [{ size: 28, space: 70 }, { size: 44 }],
        series: [{}, { stroke: "#1f5f99", width: 1, points: { show: true, size: 4, fill: "#1f5f99" } }] },
      [xs, ys], cell);
    }
  }

  function imagesRow(images) {
    return el("div", { class: "track" }, el("div", { class: "track-title", text: `Images (${images.length})` }),
      el("div", { class: "thumbs" }, images.map((n) => {
        const mod = (n.props.modality || [n.code]).filter(Boolean).join(", ") || "image";
        const box = el("div", { class: "thumb-box", title: n.pixels ? "" : "no pixels on this server (record only)",
          text: mod });
        if (n.pixels) loadThumbnail(n, box, mod);
        return el("figure", { class: "thumb", "data-node": n.id },
          box, el("figcaption", { text: `${mod} · ${isoDay(n.time)}${n.props.file ? " · " + n.props.file : ""}` }));
      })));
  }

  /** The image's preview, fetched with the key (an <img> cannot send it) and shown from a blob: URL. */
  async function loadThumbnail(node, box, label) {
    const path = `/v1/patients/${encodeURIComponent(state.patientId)}/images/${node.id.split("/").map(encodeURIComponent).join("/")}`;
    try {
      const r = await fetch(path, { headers: { Authorization: `Bearer ${state.key}` }, cache: "no-store",
        credentials: "omit", referrerPolicy: "no-referrer" });
      if (!r.ok) {
        const doc = await r.json().catch(() => null);
        box.textContent = `no preview: ${(doc && doc.detail) || r.status}`;
        return;
      }
      const url = URL.createObjectURL(await r.blob());
      const img = el("img", { alt: `${label} ${isoDay(node.time)}`, class: "thumb-img" });
      img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
      img.src = url;
      box.replaceChildren(img);
    } catch (exc) {
      box.textContent = "no preview: the service cannot be reached";
    }
  }

  function variantsList(variants) {
    return el("div", { class: "track" }, el("div", { class: "track-title", text: `Variants (${variants.length})` }),
      el("ul", { class: "variants" }, variants.map((n) => el("li", {},
        [n.props.gene, n.display || n.code, n.props.zygosity, n.props.significance].filter(Boolean).join(" · ")))));
  }

  // ------------------------------------------------------------------ forecast
  const currentModel = () => state.models.find((m) => m.name === $("model").value);

  /** The labs the chosen model forecasts, to pick the one whose drivers are listed. */
  function drawTargets() {
    const m = currentModel();
    $("fc-explain").replaceChildren(...((m && m.spec.targets) || []).map((t) =>
      el("option", { value: t.code, text: named(t.name, t.code) })));
  }

  // POST a twin request: `pane` shows `pending` meanwhile, then `onDoc` gets the answer, or the
  // page shows the API's message about `what`; `button` is disabled while it runs.
  async function postTwin(path, body, button, pane, pending, what, onDoc) {
    busy($(button), true);
    $(pane).replaceChildren(el("p", { class: "muted", text: pending }));
    try {
      const doc = await api("POST", `/v1/twins/${encodeURIComponent(state.patientId)}/${path}`, body);
      clearMessage();
      onDoc(doc);
    } catch (exc) {
      $(pane).replaceChildren();
      showMessage(explain(exc, what));
    } finally {
      busy($(button), false);
    }
  }

  async function runForecast(ev) {
    ev.preventDefault();
    const body = { model: $("model").value, horizon_days: Number($("fc-horizon").value),
      n_samples: Number($("fc-samples").value), step_days: 7, explain: true, explain_lab: $("fc-explain").value };
    if (state.asOf) body.as_of = state.asOf.toISOString();
    await postTwin("forecast", body, "run-forecast", "forecast", "forecasting…", "The forecast", (doc) => {
      state.forecast = doc;
      drawForecast(doc);
    });
  }

  function drawForecast(doc) {
    const origin = Date.parse(doc.origin);
    const grid = el("div", { class: "multiples" });
    const table = el("table", { id: "forecast-table" },
      el("thead", {}, el("tr", {}, ["lab", "unit", "day", "median", "5 %", "95 %"].map((h) => el("th", { text: h })))));
    const body = el("tbody");
    table.append(body);
    for (const [code, lab] of Object.entries(doc.labs)) {
      const last = lab.days.length - 1;
      body.append(el("tr", { "data-lab": code },
        el("td", { text: named(lab.name, code) }), el("td", { text: lab.unit }),
        el("td", { class: "day", text: String(lab.days[last]) }),
        el("td", { class: "median", text: fmt(lab.median[last]) }),
        el("td", { class: "p05", text: fmt(lab.p05[last]) }),
        el("td", { class: "p95", text: fmt(lab.p95[last]) })));
      const hist = state.nodes.filter((n) => n.type === "Lab" && n.code === code && n.value !== null && n.time)
        .map((n) => [(Date.parse(n.time) - origin) / DAY_MS, n.value]).filter((p) => p[0] <= 0 && p[0] >= -730);
      const xs = [...new Set([...hist.map((p) => p[0]), ...lab.days])].sort((a, b) => a - b);
      const at = (days, vals) => { const m = new Map(days.map((d, i) => [d, vals[i]])); return xs.map((x) => (m.has(x) ? m.get(x) : null)); };
      const cell = el("div", { class: "multiple", "data-lab": code },
        el("div", { class: "chart-title", title: named(lab.name, code), text: `${lab.name} (${lab.unit})` }));
      grid.append(cell);
      new uPlot({ width: 300, height: 150, legend: { show: false }, cursor: { show: false },
        scales: { x: { time: false } }, axes: [{ size: 28 }, { size: 44 }],
        bands: [{ series: [3, 2], fill: "rgba(31,95,153,0.18)" }],
        series: [{},
          { stroke: "#222", width: 0, paths: () => null, points: { show: true, size: 4, fill: "#222" } },
          { stroke: "rgba(31,95,153,0.4)", width: 1 }, { stroke: "rgba(31,95,153,0.4)", width: 1 },
          { stroke: "#1f5f99", width: 2 }] },
      [xs, at(hist.map((p) => p[0]), hist.map((p) => p[1])), at(lab.days, lab.p05), at(lab.days, lab.p95),
        at(lab.days, lab.median)], cell);
    }
    const risks = Object.entries(doc.event_risk);
    const drivers = el("table", { id: "drivers" },
      el("thead", {}, el("tr", {}, ["record", "type", "date", "attribution"].map((h) => el("th", { text: h })))),
      el("tbody", {}, doc.drivers.map((d) => el("tr", { "data-node": d.node_id },
        el("td", { text: named(d.display, d.code) }),
        el("td", { text: d.node_type }),
        el("td", { text: isoDay(d.time) }), el("td", { class: "score", text: fmt(d.score) })))));
    const lab = doc.explained_lab && doc.labs[doc.explained_lab];
    $("forecast").replaceChildren(
      el("p", { class: "muted", text: `origin ${doc.origin.slice(0, 10)} · model ${doc.model} · ${doc.n_members} ` +
        `ensemble member(s) × ${doc.n_samples} samples · points: history, line: median, band: 5–95 %` }),
      grid,
      el("h4", { text: `At day ${doc.horizon_days}` }), table,
      el("h4", { text: "Event risks by the horizon" }),
      risks.length ? el("ul", { id: "risks" }, risks.map(([k, v]) => el("li", { "data-event": k, text: `${k}: ${pct(v)}` })))
        : el("p", { class: "muted", text: "This model forecasts no events." }),
      el("h4", { text: `Records that drove the forecast${lab ? ` of ${lab.name} at day ${doc.explained_day}` : ""}` }),
      drivers);
  }

  // ------------------------------------------------------------------ scenario builder
  const FREQUENCIES = ["daily", "bid", "tid", "qid", "qod", "weekly"];

  function actionRow(a) {
    const treatments = (currentModel() || { spec: { treatments: [] } }).spec.treatments || [];
    const t = el("select", { class: "treatment" }, treatments.map((x) =>
      el("option", { value: x.name || x.code, "data-unit": x.unit, text: named(x.name, x.code) })));
    if (a && a.treatment) t.value = a.treatment;
    const unit = el("input", { class: "unit", size: 7, placeholder: "unit", value: (a && a.unit) || "" });
    const setUnit = () => { unit.placeholder = (t.selectedOptions[0] && t.selectedOptions[0].dataset.unit) || "unit"; };
    t.addEventListener("change", setUnit);
    setUnit();
    const schedule = el("select", { class: "schedule" },
      ["continuous", "every", "at"].map((s) => el("option", { value: s, text: s === "at" ? "on days" : s })));
    schedule.value = (a && a.schedule) || "continuous";
    const freq = el("select", { class: "frequency" }, FREQUENCIES.map((f) => el("option", { value: f, text: f })));
    freq.value = (a && a.frequency) || "daily";
    const every = el("input", { class: "every", type: "number", min: 1, size: 4, placeholder: "k days" });
    const times = el("input", { class: "times", type: "number", min: 1, size: 4, placeholder: "times" });
    const at = el("input", { class: "at", size: 12, placeholder: "0, 7, 14" });
    const shown = () => {
      freq.hidden = schedule.value !== "continuous";
      every.hidden = times.hidden = schedule.value !== "every";
      at.hidden = schedule.value !== "at";
    };
    schedule.addEventListener("change", shown);
    shown();
    return el("div", { class: "action" }, "give ", t,
      el("input", { class: "dose", type: "number", step: "any", size: 7, placeholder: "dose", value: (a && a.dose) || "" }),
      unit, schedule, freq, every, times, at,
      " from day ", el("input", { class: "start", type: "number", size: 4, value: 0 }),
      " until ", el("input", { class: "stop", type: "number", size: 4, placeholder: "horizon" }),
      el("button", { type: "button", class: "remove", text: "×", title: "remove", onclick: (e) => e.target.parentElement.remove() }));
  }

  function planCard(p) {
    const actions = el("div", { class: "actions" }, (p.actions || []).map(actionRow));
    const baseline = el("select", { class: "baseline" },
      el("option", { value: "none", text: "nothing else" }), el("option", { value: "current", text: "current therapy continues" }));
    baseline.value = p.baseline || "none";
    return el("fieldset", { class: "plan" },
      el("legend", {}, el("input", { class: "plan-name", value: p.name, size: 48 })),
      el("label", {}, "baseline ", baseline), actions,
      el("button", { type: "button", class: "add-action", text: "+ treatment", onclick: () => actions.append(actionRow()) }),
      el("button", { type: "button", class: "remove-plan", text: "remove plan", onclick: (e) => e.target.parentElement.remove() }));
  }

  function drawPlans() {
    const m = currentModel();
    const first = m && m.spec.treatments && m.spec.treatments[0];
    $("plans").replaceChildren(planCard({ name: "no treatment", baseline: "none" }),
      planCard({ name: first ? `${first.name || first.code}` : "current therapy", baseline: first ? "none" : "current",
        actions: first ? [{ treatment: first.name || first.code }] : [] }));
    const target = m && m.spec.targets && m.spec.targets[0];
    $("objective").value = "";
    $("objective").placeholder = target ? `minimise ${target.code} at 180d` : "minimise <lab> at 180d";
  }

  function readPlans() {
    return [...$("plans").querySelectorAll("fieldset.plan")].map((card) => {
      const plan = { name: card.querySelector(".plan-name").value.trim(), baseline: card.querySelector(".baseline").value,
        actions: [] };
      for (const row of card.querySelectorAll(".action")) {
        const v = (cls) => row.querySelector(`.${cls}`).value.trim();
        const a = { treatment: v("treatment") };
        if (v("dose") !== "") a.dose = Number(v("dose"));
        if (v("unit") !== "") a.unit = v("unit");
        if (v("start") !== "") a.start = Number(v("start"));
        if (v("stop") !== "") a.stop = Number(v("stop"));
        const s = v("schedule");
        if (s === "continuous") a.frequency = v("frequency");
        if (s === "every") { a.every = Number(v("every") || 1); if (v("times") !== "") a.times = Number(v("times")); }
        if (s === "at") a.at = v("at").split(/[,\s]+/).filter(Boolean).map(Number);
        plan.actions.push(a);
      }
      return plan;
    });
  }

  async function runScenarios(ev) {
    ev.preventDefault();
    const body = { model: $("model").value, plans: readPlans(), horizon_days: Number($("sc-horizon").value),
      n_samples: Number($("sc-samples").value) };
    if ($("objective").value.trim()) body.objective = $("objective").value.trim();
    if (state.asOf) body.as_of = state.asOf.toISOString();
    await postTwin("scenarios", body, "run-scenarios", "scenario", "simulating…", "The plan comparison", (doc) => {
      state.scenario = doc;
      drawScenario(doc);
    });
  }

  function drawScenario(doc) {
    const codes = Object.keys(doc.labs);
    const target = doc.ranking && doc.ranking.target;
    const chosen = codes.includes(target) ? target : codes[0];
    const labSelect = el("select", { id: "compare-lab" }, codes.map((c) => el("option", { value: c, text: named(doc.labs[c].name, c) })));
    labSelect.value = chosen;
    const holder = el("div");
    const draw = () => holder.replaceChildren(comparison(doc, labSelect.value));
    labSelect.addEventListener("change", draw);
    draw();
    const warnings = doc.results.flatMap((r) => (r.flags || []).map((f) => ({ plan: r.plan, ...f })));
    const seen = new Set(warnings.map((w) => JSON.stringify(w)));
    for (const f of doc.flags) if (!seen.has(JSON.stringify(f))) warnings.push(f);
    $("scenario").replaceChildren(...[
      el("p", { class: "muted", text: `origin ${doc.origin.slice(0, 10)} · reference: ${doc.reference} · ` +
        `${doc.n_samples} samples · intervals ${doc.quantiles.map((q) => Math.round(100 * q) + " %").join("–")}` }),
      warnings.length ? el("div", { id: "guardrails", class: "warning" }, el("strong", { text: "Guardrail warnings" }),
        el("ul", {}, warnings.map((w) => el("li", { "data-plan": w.plan || "", text: flagText(w) })))) : null,
      doc.ranking ? ranking(doc.ranking) : el("p", { class: "muted", text: "Give an objective to rank the plans." }),
      el("h4", {}, "Side by side: ", labSelect), holder,
      doc.events.length ? events(doc) : null].filter(Boolean));
  }

  function flagText(f) {
    const plan = f.plan ? `${f.plan}: ` : "";
    return plan + (f.message || f.reason || Object.entries(f).filter(([k]) => k !== "plan").map(([k, v]) => `${k} ${v}`).join(", "));
  }

  function ranking(r) {
    return el("div", { id: "ranking" },
      el("h4", { text: `Ranking by “${r.objective}” · P(top plan is best) ${pct(r.p_top_is_best)}` +
        ((r.tied || []).length > 1 ? ` · tied: ${r.tied.join(", ")} (P(best is one of them) ${pct(r.p_tied_best)})` : "") }),
      el("table", {}, el("thead", {}, el("tr", {}, ["rank", "plan", "median", "5 %", "95 %", "P(feasible)", "P(best)"]
        .map((h) => el("th", { text: h })))),
      el("tbody", {}, r.plans.map((p) => el("tr", { "data-plan": p.plan },
        el("td", { class: "rank", text: (p.tied_with_top && p.rank > 1 ? "=" : "") + String(p.rank) }), el("td", { text: p.plan }),
        el("td", { class: "median", text: fmt(p.median) }), el("td", { class: "lo", text: fmt(p.lo) }),
        el("td", { class: "hi", text: fmt(p.hi) }), el("td", { text: pct(p.p_feasible) }),
        el("td", { text: pct(p.p_best) }))))));
  }

  function comparison(doc, code) {
    const rows = doc.results;
    const days = Object.keys(rows[0].labs[code].at_day).sort((a, b) => Number(a) - Number(b));
    return el("table", { id: "comparison", "data-lab": code },
      el("thead", {}, el("tr", {}, el("th", { text: `day (${doc.labs[code].unit})` }),
        rows.map((r) => el("th", { "data-plan": r.plan, text: r.plan + (r.reference ? " (reference)" : "") })))),
      el("tbody", {}, days.map((d) => el("tr", { "data-day": d }, el("td", { text: d }), rows.map((r) => {
        const v = r.labs[code].at_day[d];
        const diff = v.diff_vs_reference;
        return el("td", { "data-plan": r.plan },
          el("span", { class: "median", text: fmt(v.median) }), " (",
          el("span", { class: "lo", text: fmt(v.lo) }), " to ", el("span", { class: "hi", text: fmt(v.hi) }), ")",
          diff && !r.reference ? el("div", { class: "diff" }, "Δ ", el("span", { class: "diff-median", text: fmt(diff.median) }),
            " (", el("span", { class: "diff-lo", text: fmt(diff.lo) }), " to ", el("span", { class: "diff-hi", text: fmt(diff.hi) }), ")") : null);
      })))));
  }

  function events(doc) {
    return el("div", {}, el("h4", { text: "Event risks" }), el("table", {},
      el("thead", {}, el("tr", {}, el("th", { text: "event" }), doc.results.map((r) => el("th", { text: r.plan })))),
      el("tbody", {}, doc.events.map((ev) => el("tr", {}, el("td", { text: ev }),
        doc.results.map((r) => {
          const v = (r.events[ev] || {}).risk_at_horizon;
          return el("td", { "data-plan": r.plan, text: v ? `${pct(v.median)} (${pct(v.lo)}–${pct(v.hi)})` : "–" });
        }))))));
  }

  // ------------------------------------------------------------------ wiring
  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("cohort-form").addEventListener("submit", findPatients);
    $("add-term").addEventListener("click", () => $("terms").append(termRow()));
    $("open-form").addEventListener("submit", (ev) => { ev.preventDefault(); openPatient($("open-id").value); });
    $("asof").addEventListener("change", loadTimeline);
    $("forecast-form").addEventListener("submit", runForecast);
    $("model").addEventListener("change", () => { drawTargets(); if (state.patientId) drawPlans(); });
    $("scenario-form").addEventListener("submit", runScenarios);
    $("add-plan").addEventListener("click", () => $("plans").append(planCard({ name: `plan ${$("plans").children.length + 1}` })));
    $("api-key").focus();
  });
})();
