// The status page of the kv sample: polls GET /cluster and draws the
// members, the leader, terms, indexes, lag and health. The bearer token is
// taken once from the address's fragment (#token=...), which browsers never
// send to a server, kept in this tab's sessionStorage only, and sent in the
// Authorization header to this origin alone (the page's CSP allows no
// other).
"use strict";

const refreshMS = 1000;
const tokenKey = "protoraft-status-token";

function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(tokenKey, decodeURIComponent(m[1]));
    // The token leaves the address bar and the history at once.
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}

let lastLeader = null;

function noteLeader(leader, term) {
  if (!leader || (lastLeader && lastLeader.id === leader && lastLeader.term === term)) return;
  const li = document.createElement("li");
  const at = new Date().toLocaleTimeString();
  if (lastLeader) {
    li.textContent = `${at}: leader changed from ${lastLeader.id} to ${leader} (term ${term})`;
  } else {
    li.textContent = `${at}: leader ${leader} (term ${term})`;
  }
  li.dataset.leader = leader;
  document.getElementById("leaders").appendChild(li);
  lastLeader = { id: leader, term: term };
}

function draw(s) {
  document.getElementById("group").textContent = s.group;
  const summary = document.getElementById("summary");
  summary.textContent = s.leader
    ? `leader ${s.leader}, term ${s.term}, commit index ${s.commit_index}, ${s.members.length} members`
    : `NO LEADER among the ${s.members.length} members`;
  summary.dataset.leader = s.leader || "";
  document.getElementById("updated").textContent = "updated " + new Date(s.checked_unix_ms).toLocaleTimeString();
  const body = document.querySelector("#members tbody");
  const rows = [];
  for (const m of s.members) {
    const tr = document.createElement("tr");
    tr.dataset.node = m.id;
    if (m.id === s.leader) tr.className = "leader";
    if (m.error) {
      tr.className = "down";
      cell(tr, m.id);
      cell(tr, m.address);
      cell(tr, m.suffrage);
      cell(tr, m.error.code);
      const td = document.createElement("td");
      td.colSpan = 10;
      td.textContent = m.error.message;
      tr.appendChild(td);
      rows.push(tr);
      continue;
    }
    cell(tr, m.id === s.leader ? m.id + " \u2605" : m.id);
    cell(tr, m.address);
    cell(tr, m.suffrage);
    cell(tr, m.state);
    cell(tr, String(m.term));
    cell(tr, m.leader || "-");
    cell(tr, String(m.commit_index));
    cell(tr, String(m.applied_index));
    cell(tr, String(m.last_index));
    cell(tr, String(m.last_snapshot_index));
    cell(tr, m.lag === undefined ? "-" : String(m.lag));
    cell(tr, m.log_lag === undefined ? "-" : String(m.log_lag));
    cell(tr, m.last_contact_ms < 0 ? "-" : m.last_contact_ms + " ms");
    if (s.health_forbidden) {
      cell(tr, "not allowed");
    } else {
      cell(tr, m.health ? `${m.health} (${m.score})` : "-", m.health);
    }
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  noteLeader(s.leader, s.term);
}

function showError(text) {
  const e = document.getElementById("error");
  e.textContent = text;
  e.hidden = !text;
}

async function refresh() {
  const token = sessionStorage.getItem(tokenKey);
  const login = document.getElementById("login");
  try {
    const resp = await fetch("/cluster", {
      headers: token ? { Authorization: "Bearer " + token } : {},
      cache: "no-store",
      credentials: "omit",
    });
    const body = await resp.json();
    if (!resp.ok) {
      showError(`${body.code}: ${body.message || ""}`);
      login.hidden = !(body.code === "UNAUTHENTICATED" || body.code === "PERMISSION_DENIED");
    } else {
      showError("");
      login.hidden = true;
      draw(body);
    }
  } catch (err) {
    showError("no answer: " + err);
  }
  setTimeout(refresh, refreshMS);
}

takeTokenFromFragment();
document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(tokenKey, document.getElementById("token").value.trim());
  document.getElementById("token").value = "";
});
refresh();
