// The status page: polls the admin API and renders it. No external assets.
"use strict";

const REFRESH_MS = 2000;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json();
  return { status: r.status, body };
}

function serverState(s) {
  if (s.removed) return ["draining (removed by a reload)", "warn"];
  if (s.draining) return ["draining", "warn"];
  if (s.health.state !== "up") return ["down", "bad"];
  return ["up", "ok"];
}

function renderBackends(list) {
  const root = document.getElementById("backends");
  root.replaceChildren();
  if (list.length === 0) root.append(el("p", { class: "muted" }, "no pools"));
  for (const b of list) {
    root.append(el("h3", {}, `${b.name} `, el("span", { class: "muted" },
      `${b.affinity !== "none" ? "affinity " + b.affinity : b.balance}, health ${b.health_check}, ` +
      `${b.totals.servers_up} up, ${b.totals.servers_down} down, ${b.totals.active} active`)));
    const tbody = el("tbody");
    for (const s of b.servers) {
      const [state, cls] = serverState(s);
      const row = el("tr", { "data-server": `${b.name} ${s.address}` },
        el("td", {}, s.address),
        el("td", { class: cls + " state" }, state),
        el("td", { class: "num" }, s.weight === s.configured_weight ? s.weight : `${s.weight} (config ${s.configured_weight})`),
        el("td", { class: "num" }, s.active),
        el("td", { class: "num" }, s.streams),
        el("td", { class: "num" }, s.total_connections),
        el("td", { class: "muted" }, s.health.last_error || ""));
      tbody.append(row);
    }
    root.append(el("table", {}, el("thead", {}, el("tr", {},
      ...["server", "state", "weight", "active", "streams", "connections", "last check error"].map(h => el("th", {}, h)))), tbody));
  }
}

function renderCertificates(list) {
  const tbody = document.querySelector("#certificates tbody");
  tbody.replaceChildren();
  const now = Date.now();
  for (const c of list) {
    const days = Math.floor((Date.parse(c.not_after) - now) / 86400000);
    tbody.append(el("tr", {},
      el("td", {}, (c.names || []).join(", ")),
      el("td", {}, c.source),
      el("td", {}, c.serial),
      el("td", {}, c.not_after),
      el("td", { class: "num " + (days < 0 ? "bad" : days < 14 ? "warn" : "ok") }, days),
      el("td", { class: "muted" }, c.issuer)));
  }
  if (list.length === 0) tbody.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no certificates (passthrough only)")));
}

function renderReloads(list) {
  const tbody = document.querySelector("#reloads tbody");
  tbody.replaceChildren();
  for (const r of list) {
    tbody.append(el("tr", {},
      el("td", {}, r.time),
      el("td", {}, r.trigger),
      el("td", { class: r.result === "success" ? "ok" : "bad" }, r.result),
      el("td", { class: "muted" }, r.result === "success" ? (r.hash || "").slice(0, 12) : (r.problems || []).join("; "))));
  }
  if (list.length === 0) tbody.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "no reload since start")));
}

async function refresh() {
  const err = document.getElementById("error");
  try {
    const [ready, backends, certs, reloads] = await Promise.all([
      getJSON("/readyz"), getJSON("/api/v1/backends"), getJSON("/api/v1/certificates"), getJSON("/api/v1/reloads")]);
    const pill = document.getElementById("ready");
    pill.textContent = ready.body.status;
    pill.className = "pill " + (ready.status === 200 ? "ok" : "bad");
    renderBackends(backends.body.backends);
    renderCertificates(certs.body.certificates);
    renderReloads(reloads.body.reloads);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    err.hidden = true;
  } catch (e) {
    err.textContent = "cannot reach the admin API: " + e.message;
    err.hidden = false;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
