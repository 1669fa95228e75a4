// lemgrid dashboard: renders the server's JSON views, follows the public SSE feed, signs the
// participant's requests with WebCrypto Ed25519 and checks ledger receipts with WebCrypto SHA-256
// (RFC 9162 inclusion proofs, the algorithm of lemgrid.ledger.merkle.verify_inclusion).
"use strict";

const lemgrid = (() => {
  const enc = new TextEncoder();
  const $ = (id) => document.getElementById(id);
  const state = { view: null, grid: null, key: null, who: null, clockOffsetMs: 0 };

  // -- bytes, canonical JSON (RFC 8785 on lemgrid's subset: strings, integers, ...) ----------
  const hex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
  const unhex = (text) => {
    if (typeof text !== "string" || !/^([0-9a-f]{2})*$/.test(text)) throw new Error("not hex: " + text);
    return new Uint8Array(text.match(/../g)?.map((h) => parseInt(h, 16)) ?? []);
  };
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  function canonical(value) {
    if (value === null || typeof value !== "object") {
      if (typeof value === "number" && !Number.isSafeInteger(value)) throw new Error("not an integer: " + value);
      return JSON.stringify(value);
    }
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const equalBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // -- Merkle inclusion (RFC 9162, 2.1.3.2) -------------------------------------------------
  const leafHash = (data) => sha256(concat(new Uint8Array([0]), data));
  const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));
  async function verifyInclusion(leaf, index, treeSize, path, root) {
    if (!(0 <= index && index < treeSize)) return false;
    let fn = index, sn = treeSize - 1, r = leaf;
    for (const p of path) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        if (fn % 2 === 0) { while (fn && fn % 2 === 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && equalBytes(r, root);
  }

  const LEDGER_CONTEXT = concat(enc.encode("lemgrid-ledger/v1"), new Uint8Array([0]));
  async function ed25519Verify(publicHex, sigHex, message) {
    try {
      const key = await crypto.subtle.importKey("raw", unhex(publicHex), { name: "Ed25519" }, false, ["verify"]);
      return await crypto.subtle.verify({ name: "Ed25519" }, key, unhex(sigHex), message);
    } catch (e) {
      return null;  // this browser has no Ed25519 in WebCrypto
    }
  }

  // A receipt: an inclusion proof document (lemgrid-inclusion-proof/1) checked against the
  // checkpoint the log published (GET /ledger/checkpoints) and the pinned log key.
  async function verifyReceipt(doc, published, logKey) {
    try {
      if (!doc || doc.format !== "lemgrid-inclusion-proof/1") return { ok: false, message: "not an inclusion proof" };
      const cp = doc.checkpoint, payload = cp && cp.payload;
      if (!payload || payload.kind !== "checkpoint") return { ok: false, message: "the proof carries no checkpoint" };
      const same = published.find((c) => c.seq === cp.seq);
      if (!same || canonical(same) !== canonical(cp)) return { ok: false, message: `checkpoint ${cp.seq} differs from the one the log published` };
      if (cp.seq !== payload.tree_size) return { ok: false, message: "checkpoint is not the entry right after the tree it signs" };
      const keyId = hex(await sha256(unhex(logKey))).slice(0, 32);
      if (cp.signer !== keyId) return { ok: false, message: "checkpoint not signed by the log key" };
      const sigOk = await ed25519Verify(logKey, cp.sig, concat(LEDGER_CONTEXT, enc.encode(canonical(payload))));
      if (sigOk === false) return { ok: false, message: "checkpoint signature does not verify with the log key" };
      if (doc.tree_size !== payload.tree_size) return { ok: false, message: "proof is for another tree size than the checkpoint" };
      if (!doc.entry || doc.entry.seq !== doc.leaf_index) return { ok: false, message: `entry does not carry position ${doc.leaf_index}` };
      const leaf = await leafHash(enc.encode(canonical(doc.entry)));
      const path = doc.audit_path.map(unhex);
      if (path.some((h) => h.length !== 32)) return { ok: false, message: "audit path hashes must be 32 bytes" };
      const ok = await verifyInclusion(leaf, doc.leaf_index, doc.tree_size, path, unhex(payload.root_hash));
      if (!ok) return { ok: false, message: `entry ${doc.leaf_index} is NOT in the checkpointed tree (root ${payload.root_hash.slice(0, 16)}…)` };
      return { ok: true, message: `entry ${doc.leaf_index} (${doc.entry.payload.kind}) is in the log's tree of ${doc.tree_size} entries, root ${payload.root_hash.slice(0, 16)}…` +
        (sigOk === null ? " (checkpoint signature not checked: no Ed25519 in this browser)" : ", checkpoint signature verified") };
    } catch (e) {
      return { ok: false, message: "malformed proof: " + e.message };
    }
  }

  // -- signed requests (lemgrid.service.signing.request_message) -----------------------------
  const REQUEST_CONTEXT = enc.encode("lemgrid-request/1\n");
  async function loadKey(pem) {
    const b64 = pem.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, "").replace(/\s+/g, "");
    if (!b64) throw new Error("paste a PEM private key");
    const der = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const key = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", key);
    const pub = Uint8Array.from(atob(jwk.x.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    return { key, keyId: hex(await sha256(pub)).slice(0, 32) };
  }
  async function signedFetch(method, path, body) {
    const data = body === undefined ? new Uint8Array() : enc.encode(JSON.stringify(body));
    const ts = Date.now() + state.clockOffsetMs;
    const nonce = hex(crypto.getRandomValues(new Uint8Array(12)));
    const message = concat(REQUEST_CONTEXT, enc.encode(canonical({
      method, path, body_sha256: hex(await sha256(data)), timestamp_ms: ts, nonce })));
    const sig = hex(await crypto.subtle.sign({ name: "Ed25519" }, state.key.key, message));
    const headers = { "X-Lemgrid-Key": state.key.keyId, "X-Lemgrid-Timestamp": String(ts),
                      "X-Lemgrid-Nonce": nonce, "X-Lemgrid-Signature": sig };
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : data });
    const answer = await r.json();
    if (!r.ok) throw new Error(`${r.status}: ${typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail)}`);
    return answer;
  }

  // -- rendering ----------------------------------------------------------------------------
  const kwh = (wh) => (wh / 1000).toFixed(3);
  const eurPerKwh = (m) => (m / 1000).toFixed(3);
  const eur = (u) => (u / 1e6).toFixed(2);
  function fillTable(id, rows, cells) {
    const body = $(id).tBodies[0];
    body.replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      for (const c of cells(row)) {
        const td = document.createElement("td");
        if (c instanceof Node) td.append(c); else td.textContent = c;
        tr.append(td);
      }
      return tr;
    }));
  }

  // Voltage: blue below nominal, green at nominal, red above; loading: grey to orange to dark red.
  function mix(a, b, t) {
    const pa = a.match(/\w\w/g).map((h) => parseInt(h, 16)), pb = b.match(/\w\w/g).map((h) => parseInt(h, 16));
    return "#" + pa.map((x, i) => Math.round(x + (pb[i] - x) * t).toString(16).padStart(2, "0")).join("");
  }
  const clip = (x) => Math.min(1, Math.max(0, x));
  function voltageColour(vm, lim) {
    if (vm === null) return "#9ca3af";
    if (vm < 1) return mix("1b7837", "1a4f9c", clip((1 - vm) / (1 - lim.vm_min_pu)));
    return mix("1b7837", "9c1a1a", clip((vm - 1) / (lim.vm_max_pu - 1)));
  }
  function loadingColour(pct, lim) {
    if (pct === null) return "#9ca3af";
    const t = pct / lim.max_loading_percent;
    return t <= 0.7 ? mix("6b7b8c", "c2410c", clip(t / 0.7)) : mix("c2410c", "7f1d1d", clip((t - 0.7) / 0.3));
  }

  function drawFeeder(grid) {
    const svg = $("feeder"), ns = "http://www.w3.org/2000/svg";
    const xs = grid.buses.map((b) => b.x), ys = grid.buses.map((b) => b.y);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const w = x1 - x0 || 1, h = y1 - y0 || 1, pad = 0.04;
    const sx = (x) => 1000 * (pad + (1 - 2 * pad) * (x - x0) / w);
    const sy = (y) => 600 * (pad + (1 - 2 * pad) * (y1 - y) / h);  // north (or the slack) up
    svg.setAttribute("viewBox", "0 0 1000 600");
    svg.replaceChildren();
    grid.branches.forEach((br, k) => {
      if (br.from < 0 || br.to < 0) return;
      const a = grid.buses[br.from], b = grid.buses[br.to];
      const line = document.createElementNS(ns, "line");
      Object.entries({ x1: sx(a.x), y1: sy(a.y), x2: sx(b.x), y2: sy(b.y), "data-branch": k, "stroke-width": 3 })
        .forEach(([n, v]) => line.setAttribute(n, v));
      const title = document.createElementNS(ns, "title"); line.append(title);
      svg.append(line);
    });
    grid.buses.forEach((bus, i) => {
      const c = document.createElementNS(ns, "circle");
      Object.entries({ cx: sx(bus.x), cy: sy(bus.y), r: i === grid.slack_bus ? 9 : 5, "data-bus": i, stroke: "#111827", "stroke-width": 0.8 })
        .forEach(([n, v]) => c.setAttribute(n, v));
      const title = document.createElementNS(ns, "title"); c.append(title);
      svg.append(c);
    });
  }

  function colourFeeder(t) {
    const grid = state.grid, lim = grid.limits, vm = grid.vm_pu[t], ld = grid.loading_percent[t];
    for (const c of $("feeder").querySelectorAll("circle")) {
      const i = +c.dataset.bus, v = vm[i];
      c.setAttribute("fill", voltageColour(v, lim));
      c.firstChild.textContent = `${grid.buses[i].name}: ${v === null ? "not energised" : v.toFixed(3) + " p.u."}`;
    }
    for (const l of $("feeder").querySelectorAll("line")) {
      const k = +l.dataset.branch, p = ld[k];
      l.setAttribute("stroke", loadingColour(p, lim));
      l.setAttribute("stroke-width", p !== null && p > lim.max_loading_percent ? 7 : 3);
      l.firstChild.textContent = `${grid.branches[k].name}: ${p === null ? "no flow" : p.toFixed(1) + " %"}`;
    }
    const live = vm.map((v, i) => [v, i]).filter(([v, i]) => v !== null && i !== grid.slack_bus);
    const low = live.reduce((m, x) => (x[0] < m[0] ? x : m), [Infinity, -1]);
    const high = ld.map((p, k) => [p, k]).filter(([p]) => p !== null).reduce((m, x) => (x[0] > m[0] ? x : m), [-Infinity, -1]);
    const light = (state.view?.lights || []).find((x) => x.interval === grid.intervals[t]);
    $("interval-label").textContent = `${grid.times[t]} (interval ${grid.intervals[t]})`;
    $("grid-summary").textContent = (low[1] >= 0 ? `Lowest voltage ${low[0].toFixed(3)} p.u. at bus ${grid.buses[low[1]].name}; ` : "") +
      (high[1] >= 0 ? `most loaded ${grid.branches[high[1]].name} at ${high[0].toFixed(1)} %` : "") +
      (light ? `; traffic light ${light.state}` : "");
  }

  function renderLights(view) {
    const box = $("lights");
    const byInterval = new Map(view.lights.map((x) => [x.interval, x]));
    const intervals = state.grid ? state.grid.intervals : view.lights.map((x) => x.interval);
    box.replaceChildren(...intervals.map((i) => {
      const x = byInterval.get(i), cell = document.createElement("span");
      cell.className = "light " + (x ? x.state : "none");
      cell.setAttribute("role", "listitem");
      cell.textContent = x ? x.state[0].toUpperCase() : "·";
      cell.title = x ? `interval ${i}: ${x.state} (${x.stage}) ${x.reason}` : `interval ${i}: not checked yet`;
      cell.setAttribute("aria-label", cell.title);
      return cell;
    }));
    fillTable("requests-table", view.requests, (r) => [r.interval, r.service, r.reason]);
    fillTable("offers-table", view.offers, (o) => [o.interval, o.direction, kwh(o.power_w), eurPerKwh(o.price_meur_per_kwh)]);
    fillTable("activations-table", view.activations, (a) => [a.interval, a.direction, kwh(a.power_w), a.buyer]);
  }

  function renderMarket(view) {
    const select = $("session-select"), chosen = select.value;
    select.replaceChildren(...view.sessions.map((s) => new Option(`${s.market_id} (interval ${s.interval}, ${s.state})`, s.market_id)));
    const open = view.sessions.filter((s) => s.state === "open");
    select.value = view.sessions.some((s) => s.market_id === chosen) ? chosen : (open[0] || view.sessions[0] || {}).market_id || "";
    $("n-trades").textContent = view.n_trades;
    fillTable("trades-table", view.trades, (x) => [x.market_id, x.interval, x.trade_id, kwh(x.quantity_wh), eurPerKwh(x.price_meur_per_kwh)]);
    renderDepth(view);
    if (window.Plotly) {
      Plotly.react("price-chart", [{ x: view.local_price.map((p) => p.interval), y: view.local_price.map((p) => p.price_meur_per_kwh / 1000),
        mode: "lines+markers", name: "local price", line: { color: "#1d4ed8" } }],
        { margin: { t: 10, r: 10, b: 40, l: 55 }, xaxis: { title: { text: "interval" } }, yaxis: { title: { text: "€/kWh" } } },
        { displayModeBar: false, responsive: true });
    }
  }

  function renderDepth(view) {
    const d = view.depth[$("session-select").value] || { bids: [], asks: [] };
    const n = (view.open_orders || {})[$("session-select").value] || 0;
    $("depth-summary").textContent = `${n} open orders; best bid ${d.bids[0] ? eurPerKwh(d.bids[0].price_meur_per_kwh) : "–"} €/kWh, best ask ${d.asks[0] ? eurPerKwh(d.asks[0].price_meur_per_kwh) : "–"} €/kWh`;
    if (!window.Plotly) return;
    const trace = (levels, name, color) => ({ x: levels.map((l) => l.cumulative_wh / 1000), y: levels.map((l) => l.price_meur_per_kwh / 1000),
      name, mode: "lines", line: { shape: "hv", color, width: 2 } });
    Plotly.react("depth-chart", [trace(d.bids, "bids", "#166534"), trace(d.asks, "asks", "#991b1b")],
      { margin: { t: 10, r: 10, b: 40, l: 55 }, xaxis: { title: { text: "cumulative kWh" } }, yaxis: { title: { text: "€/kWh" } } },
      { displayModeBar: false, responsive: true });
  }

  async function refresh() {
    const r = await fetch("/dashboard/api/public");
    state.view = await r.json();
    renderMarket(state.view);
    renderLights(state.view);
    if (state.grid) colourFeeder(+$("interval-slider").value);
    if (state.key) await refreshMine();
    document.body.dataset.refreshed = String(Date.now());
  }

  // -- the signed-in views -------------------------------------------------------------------
  async function refreshMine() {
    const me = await signedFetch("GET", "/identities/me");
    state.who = me;
    $("who").textContent = `signed in as ${me.participant} (${me.role})`;
    if (me.role === "participant" || me.role === "aggregator") {
      const v = await signedFetch("GET", "/dashboard/api/me");
      $("me-view").hidden = false;
      $("me-total").textContent = eur(v.total_ueur);
      fillTable("statements-table", v.statements, (s) => [s.market_id, s.interval, s.participant, eur(s.amount_ueur)]);
      fillTable("schedule-table", v.schedule, (s) => [s.interval, s.participant, kwh(s.bought_wh), kwh(s.sold_wh)]);
      fillTable("orders-table", v.orders, (o) => {
        const button = document.createElement("button");
        button.type = "button"; button.textContent = "Verify"; button.dataset.seq = o.seq;
        button.setAttribute("aria-label", `Verify the ledger receipt of order ${o.order_id}`);
        const out = document.createElement("output"); out.id = `receipt-${o.seq}`; out.setAttribute("aria-live", "polite");
        button.addEventListener("click", () => checkReceipt(o.seq, out));
        const box = document.createElement("span"); box.append(button, " ", out);
        return [o.market_id, o.order_id, o.side, kwh(o.quantity_wh), eurPerKwh(o.price_meur_per_kwh), o.status, o.seq, box];
      });
      fillTable("my-flex-table", [...v.offers.map((o) => ["offer", o]), ...v.activations.map((a) => ["activation", a])],
        ([kind, x]) => [kind, x.interval, x.direction, kwh(x.power_w)]);
    } else {
      const v = await signedFetch("GET", "/dashboard/api/operator");
      $("operator-view").hidden = false;
      $("operator-note").textContent = `Signed in as ${me.participant} (${me.role}); ledger of ${v.ledger_size} entries.`;
      fillTable("budget-table", v.sessions, (s) => [s.market_id, s.interval, s.state, eur(s.sum_amount_ueur)]);
      fillTable("identities-table", v.identities, (i) => [i.participant, i.role, i.meter, i.approved ? "yes" : "pending"]);
      fillTable("op-activations-table", v.activations, (a) => [a.interval, a.provider, a.direction, kwh(a.power_w), eur(a.utilisation_ueur)]);
    }
  }

  async function checkReceipt(seq, out) {
    out.textContent = "checking…";
    try {
      const [doc, published] = await Promise.all([signedFetch("GET", `/ledger/inclusion/${seq}`), signedFetch("GET", "/ledger/checkpoints")]);
      const result = await verifyReceipt(doc, published, document.body.dataset.logKey);
      out.textContent = (result.ok ? "verified: " : "does not verify: ") + result.message;
      out.className = result.ok ? "ok" : "bad";
      out.dataset.ok = String(result.ok);
    } catch (e) {
      out.textContent = "does not verify: " + e.message; out.className = "bad"; out.dataset.ok = "false";
    }
  }

  // -- start --------------------------------------------------------------------------------
  let pending = null;
  const soon = () => { if (!pending) pending = setTimeout(() => { pending = null; refresh().catch(report); }, 100); };
  const report = (e) => { $("feed-state").textContent = "error: " + e.message; };

  async function start() {
    state.view = JSON.parse($("initial-view").textContent);
    const health = await (await fetch("/health")).json();
    state.clockOffsetMs = health.clock_ms - Date.now();
    renderMarket(state.view);
    if (document.body.dataset.hasGrid === "true") {
      state.grid = await (await fetch("/dashboard/api/grid")).json();
      const slider = $("interval-slider");
      slider.max = String(state.grid.intervals.length - 1);
      $("layout-source").textContent = state.grid.source === "geodata" ? `the grid's geodata (${state.grid.grid})` : `computed from the topology (${state.grid.grid} has no geodata)`;
      drawFeeder(state.grid);
      const peak = state.grid.vm_pu.map((row) => Math.min(...row.filter((v) => v !== null))).reduce((m, v, t, a) => (v < a[m] ? t : m), 0);
      slider.value = String(peak);  // open at the interval with the lowest voltage
      slider.addEventListener("input", () => colourFeeder(+slider.value));
      colourFeeder(peak);
    }
    renderLights(state.view);
    $("session-select").addEventListener("change", () => renderDepth(state.view));
    $("key-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        state.key = await loadKey($("key-pem").value);
        $("key-pem").value = "";
        await refreshMine();
      } catch (e) {
        state.key = null;
        $("who").textContent = "could not sign in: " + e.message;
      }
    });
    const feed = new EventSource("/dashboard/feed");
    feed.onopen = () => { $("feed-state").textContent = "connected"; };
    feed.onerror = () => { $("feed-state").textContent = "reconnecting"; };
    for (const name of ["order", "cancel", "gate-closure", "trade", "checkpoint", "traffic-light", "flex-request", "flex-offer", "flex-activation"]) {
      feed.addEventListener(name, soon);
    }
    document.body.dataset.ready = "true";
  }
  document.addEventListener("DOMContentLoaded", () => start().catch(report));
  return { canonical, verifyReceipt, verifyInclusion, state, colourFeeder };
})();
window.lemgrid = lemgrid;
