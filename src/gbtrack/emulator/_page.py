"""The emulator's live page (``GET /``) and the feed it polls (``GET /_emulator/live``).

One self-contained HTML document: inline CSS and JavaScript, no external assets. It
shows the events and, beside them, the orders. Every value that came from a request
(customer ids, event names, metadata, order ids) is untrusted: the
script builds the DOM with ``createElement`` and ``textContent`` only, never
``innerHTML``, and the page is served with a Content-Security-Policy that allows only
its own inline script and style (by hash) and ``fetch`` to its own origin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any, Final
from urllib.parse import parse_qs

from gbtrack.emulator._state import EmulatorState, Response

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "live_response", "live_snapshot", "page_response"]

DEFAULT_LIMIT: Final = 200
"""Events (and orders) the feed lists by default (newest first)."""
MAX_LIMIT: Final = 1000
"""The most events (and orders) one feed answer lists."""
_INJECTED_SHOWN: Final = 100

_STYLE: Final = """
:root { color-scheme: light dark; --muted: #6b7280; --line: #d1d5db; --accent: #2563eb; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; }
header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: baseline;
  border-bottom: 1px solid var(--line); padding: .8rem 0; }
h1 { font-size: 1.25rem; margin: 0; }
h2 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
.muted { color: var(--muted); }
#state.error { color: #b91c1c; font-weight: 600; }
label input { font: inherit; padding: .2rem .4rem; min-width: 16rem; }
.cards { display: flex; flex-wrap: wrap; gap: .6rem; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .7rem; }
.card b { display: block; font-size: 1.2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem;
  border-bottom: 1px solid var(--line); }
th { font-weight: 600; white-space: nowrap; }
td.meta code { display: inline-block; margin: 0 .3rem .2rem 0; padding: 0 .3rem;
  border-radius: 4px; background: rgba(127, 127, 127, .15); white-space: pre-wrap;
  word-break: break-word; }
.pill { border-radius: 999px; padding: 0 .5rem; background: rgba(37, 99, 235, .15);
  white-space: nowrap; }
.bad { background: rgba(220, 38, 38, .18); }
.empty { color: var(--muted); font-style: italic; }
"""

_SCRIPT: Final = """
"use strict";
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);
const filterInput = $("customer");
filterInput.value = new URLSearchParams(location.search).get("customer") || "";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = String(cell);
    tr.appendChild(td);
  }
  return tr;
}
function time(seconds) {
  const d = new Date(seconds * 1000);
  return d.toLocaleTimeString([], {hour12: false}) + "." +
    String(d.getMilliseconds()).padStart(3, "0");
}
function metadata(meta) {
  const td = document.createElement("td");
  td.className = "meta";
  const keys = Object.keys(meta || {});
  if (!keys.length) td.appendChild(el("span", "(none)", "empty"));
  for (const key of keys) td.appendChild(el("code", key + ": " + JSON.stringify(meta[key])));
  return td;
}
function customer(event) {
  const span = document.createElement("span");
  span.appendChild(el("span", event.customerId, "customer-id"));
  for (const extra of [event.email, event.mobile]) {
    if (extra) { span.appendChild(document.createElement("br"));
                 span.appendChild(el("small", extra, "muted")); }
  }
  return span;
}
function renderEvents(data) {
  const body = document.createElement("tbody");
  body.id = "events-body";
  for (const event of data.events) {
    const tr = row([time(event.receivedAt), customer(event), el("span", event.name, "event-name")]);
    tr.className = "event";
    tr.appendChild(metadata(event.metadata));
    const batched = event.batched
      ? "yes: job " + event.batchJobId + ", item " + event.batchIndex : "no";
    for (const cell of [event.version, batched, event.hasSessionToken ? "yes" : "no"]) {
      tr.appendChild(row([cell]).firstChild);
    }
    const status = el("span", event.status, "pill status");
    if (!event.ok) status.classList.add("bad");
    tr.appendChild(row([status]).firstChild);
    body.appendChild(tr);
  }
  $("events-body").replaceWith(body);
  $("events-empty").hidden = data.events.length > 0;
  const filter = data.customer ? " matching \\u201c" + data.customer + "\\u201d" : "";
  $("events-count").textContent = data.events.length + " shown of " + data.matching + filter;
}
function renderOrders(data) {
  const body = document.createElement("tbody");
  body.id = "orders-body";
  for (const order of data.orders) {
    const id = el("span", order.orderId, "order-id");
    const idCell = document.createElement("span");
    idCell.appendChild(id);
    if (order.duplicate) idCell.appendChild(el("span", " duplicate", "pill bad"));
    const lines = (order.body && Array.isArray(order.body.lineItems))
      ? order.body.lineItems.length : 0;
    const batched = order.batched
      ? "yes: job " + order.batchJobId + ", item " + order.batchIndex : "no";
    const tr = row([time(order.receivedAt), customer(order), idCell, order.totalPaid,
      order.rewardedPoints, lines, order.version, batched,
      order.hasSessionToken ? "yes" : "no"]);
    tr.className = "order";
    const status = el("span", order.status, "pill status");
    if (!order.ok) status.classList.add("bad");
    tr.appendChild(row([status]).firstChild);
    body.appendChild(tr);
  }
  $("orders-body").replaceWith(body);
  $("orders-empty").hidden = data.orders.length > 0;
  const filter = data.customer ? " matching \u201c" + data.customer + "\u201d" : "";
  $("orders-count").textContent = data.orders.length + " shown of " + data.ordersMatching +
    filter + ", " + data.ordersPoints + " points";
}
function card(label, value) {
  const div = el("div", label, "card");
  div.prepend(el("b", value));
  return div;
}
function renderCounters(stats) {
  const cards = [card("events", stats.events), card("stored", stats.storedEvents),
    card("orders", stats.orders), card("points", stats.points),
    card("rate limited (429)", stats.rateLimited),
    card("orders rate limited", stats.rateLimitedByBucket.orders),
    card("dropped", stats.dropped),
    card("batch jobs", stats.batchJobs.total), card("internal errors", stats.internalErrors)];
  for (const [endpoint, statuses] of Object.entries(stats.requests)) {
    const parts = Object.entries(statuses)
      .map(([s, n]) => (s === "0" ? "dropped" : s) + "\\u00d7" + n);
    cards.push(card(endpoint + " requests", parts.join("  ")));
  }
  $("counters").replaceChildren(...cards);
}
function renderFaults(data) {
  const armed = data.stats.faults;
  const items = [];
  for (const entry of armed.queue) {
    const f = entry.fault;
    const what = f.kind === "fail" ? "fail " + f.status + "/" + f.code : "drop " + f.when;
    items.push(el("li", what + " \\u00d7" + entry.remaining));
  }
  if (armed.latency) {
    const times = armed.latencyRemaining === null
      ? "every request" : armed.latencyRemaining + " more";
    items.push(el("li", "latency " + armed.latency + " s (" + times + ")"));
  }
  if (armed.batchItemCustomerIds.length) {
    items.push(el("li", "batch items of: " + armed.batchItemCustomerIds.join(", ")));
  }
  if (armed.batchNextItems) items.push(el("li", "next " + armed.batchNextItems + " batch items"));
  if (!items.length) items.push(el("li", "none", "empty"));
  $("armed").replaceChildren(...items);
  const body = document.createElement("tbody");
  body.id = "injected-body";
  for (const fault of data.injected) {
    const tr = row([time(fault.receivedAt), fault.endpoint, fault.fault,
      fault.status === null ? "" : fault.status === 0 ? "dropped" : fault.status]);
    tr.className = "injected";
    body.appendChild(tr);
  }
  $("injected-body").replaceWith(body);
  $("injected-empty").hidden = data.injected.length > 0;
}
let timer = null;
async function poll() {
  clearTimeout(timer);
  const query = new URLSearchParams({customer: filterInput.value.trim()});
  try {
    const answer = await fetch("/_emulator/live?" + query, {cache: "no-store"});
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    const data = await answer.json();
    renderEvents(data);
    renderOrders(data);
    renderCounters(data.stats);
    renderFaults(data);
    $("state").textContent = "updated " + time(data.now);
    $("state").className = "muted";
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (error) {
    $("state").textContent = "emulator unreachable (" + error.message + "), retrying";
    $("state").className = "error";
  }
  timer = setTimeout(poll, POLL_MS);
}
filterInput.addEventListener("input", () => {
  const url = new URL(location.href);
  if (filterInput.value.trim()) url.searchParams.set("customer", filterInput.value.trim());
  else url.searchParams.delete("customer");
  history.replaceState(null, "", url);
  poll();
});
poll();
"""

_HTML: Final = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gameball emulator: live</title>
<link rel="icon" href="data:,">
<style>{_STYLE}</style>
</head>
<body>
<header>
  <h1>Gameball emulator</h1>
  <label>Customer <input id="customer" type="search" placeholder="filter by customer id"
    autocomplete="off"></label>
  <span id="state" class="muted">loading&hellip;</span>
</header>
<h2>Counters</h2>
<div id="counters" class="cards"></div>
<h2>Events <span id="events-count" class="muted"></span></h2>
<table>
  <thead><tr><th>Received</th><th>Customer</th><th>Event</th><th>Metadata</th><th>API</th>
    <th>Batched</th><th>Token</th><th>Status</th></tr></thead>
  <tbody id="events-body"></tbody>
</table>
<p id="events-empty" class="empty">No event received yet.</p>
<h2>Orders <span id="orders-count" class="muted"></span></h2>
<table>
  <thead><tr><th>Received</th><th>Customer</th><th>Order</th><th>Total paid</th>
    <th>Points</th><th>Lines</th><th>API</th><th>Batched</th><th>Token</th><th>Status</th>
  </tr></thead>
  <tbody id="orders-body"></tbody>
</table>
<p id="orders-empty" class="empty">No order received yet.</p>
<h2>Faults</h2>
<p class="muted">Armed:</p>
<ul id="armed"></ul>
<p class="muted">Injected (newest first):</p>
<table>
  <thead><tr><th>Received</th><th>Endpoint</th><th>Fault</th><th>Answer</th></tr></thead>
  <tbody id="injected-body"></tbody>
</table>
<p id="injected-empty" class="empty">No fault injected yet.</p>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


_CSP: Final = "; ".join(
    [
        "default-src 'none'",
        f"script-src {_csp_hash(_SCRIPT)}",
        f"style-src {_csp_hash(_STYLE)}",
        "connect-src 'self'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_PAGE_HEADERS: Final = (
    ("Content-Security-Policy", _CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


def page_response() -> Response:
    """The live page: ``200 text/html; charset=utf-8`` with its security headers."""
    return Response(200, _HTML.encode(), _PAGE_HEADERS, content_type="text/html; charset=utf-8")


def _record_status(
    record: dict[str, Any], statuses: dict[str, int], jobs: dict[int, str | None]
) -> tuple[str, bool]:
    """Describe what became of an event's or order's request, and whether that went well."""
    job_id = record["batchJobId"]
    if job_id is not None:
        job_status = jobs.get(job_id)
        return f"batch job {job_status or 'forgotten'}", job_status == "completed"
    status = statuses.get(record["requestId"])
    if status is None:
        return "recorded", True
    if status == 0:
        return "processed, answer dropped", False
    return f"{status} answered", status < 400


def _annotate(shown: list[dict[str, Any]], state: EmulatorState, statuses: dict[str, int]) -> None:
    """Add ``batched``, ``status`` and ``ok`` to listed events or orders, in place."""
    jobs: dict[int, str | None] = {}
    for record in shown:
        job_id = record["batchJobId"]
        if job_id is not None and job_id not in jobs:
            status = state.batch_status(job_id)
            jobs[job_id] = None if status is None else status["status"]
        record["batched"] = job_id is not None
        record["status"], record["ok"] = _record_status(record, statuses, jobs)


def live_snapshot(state: EmulatorState, query: str = "") -> dict[str, Any]:
    """What ``GET /_emulator/live`` answers: the page's data, newest events first.

    Args:
        state: The emulator's state to describe.
        query: The query string: ``customer`` keeps events and orders whose customer id
            contains it (case-insensitive); ``limit`` caps the events listed, and the
            orders (default 200, at most 1,000).

    Returns:
        ``{"events", "matching", "orders", "ordersMatching", "ordersPoints", "customer",
        "stats", "injected", "now"}``: ``events`` as ``GET /_emulator/events`` lists
        them plus ``batched`` (bool), ``status`` (what became of the request: ``"200
        answered"``, ``"processed, answer dropped"``, ``"batch job completed"``) and
        ``ok``; ``matching`` counts the stored events the filter keeps; ``orders`` as
        ``GET /_emulator/orders`` lists them, with the same three additions;
        ``ordersMatching`` and ``ordersPoints`` count the stored orders the filter keeps
        and their points; ``stats`` is ``GET /_emulator/stats``; ``injected`` lists the
        newest injected faults first.

    Raises:
        ValueError: If ``limit`` is not an integer.
    """
    params = parse_qs(query)
    customer = (params.get("customer") or [""])[0].strip()
    limit = max(0, min(MAX_LIMIT, int((params.get("limit") or [str(DEFAULT_LIMIT)])[0])))
    events = state.records.events
    orders = state.records.orders
    if customer:
        needle = customer.casefold()
        events = [e for e in events if needle in e.customer_id.casefold()]
        orders = [o for o in orders if needle in o.customer_id.casefold()]
    shown = [event.to_dict() for event in reversed(events[-limit:] if limit else [])]
    shown_orders = [order.to_dict() for order in reversed(orders[-limit:] if limit else [])]
    statuses = {record.request_id: record.status for record in state.request_log}
    _annotate(shown, state, statuses)
    _annotate(shown_orders, state, statuses)
    injected = state.injected_faults[-_INJECTED_SHOWN:]
    injected.reverse()
    return {
        "events": shown,
        "matching": len(events),
        "orders": shown_orders,
        "ordersMatching": len(orders),
        "ordersPoints": sum(order.rewarded_points for order in orders),
        "customer": customer,
        "stats": state.stats(),
        "injected": injected,
        "now": time.time(),
    }


def live_response(state: EmulatorState, query: str) -> Response:
    """The feed as a JSON response (``Cache-Control: no-store``)."""
    body = json.dumps(live_snapshot(state, query), separators=(",", ":")).encode()
    return Response(200, body, (("Cache-Control", "no-store"),))
