// The owner's dashboard. It talks only to the JSON API, with the token the owner pasted,
// kept in sessionStorage (this tab only) and sent as a Bearer header: no cookie exists
// that another site could ride. Data is written with textContent, never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "agent-orders.token";
  const PAGE_SIZE = 20;
  const CHART_DAYS = 30;
  const $ = (id) => document.getElementById(id);
  const { formatMoney, dateTime, dateOnly } = window.agentOrders;
  const state = {
    status: "", search: "", cursors: [null], next: null, order: null,
    selected: new Map(), // order id -> number, for "Mark selected as …"
    edit: null, // the edit being prepared: { body, products }
  };

  const label = (status) => status.charAt(0).toUpperCase() + status.slice(1);
  const when = (iso) => (iso ? dateTime.format(new Date(iso)) : "");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    });
    children.flat().forEach((c) => c != null && node.append(c));
    return node;
  }

  function show(node, text) {
    node.textContent = text || "";
    node.hidden = !text;
  }

  // ---- the API -------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || "The server answered " + status + ".");
      this.status = status;
      this.problem = problem;
    }
  }

  async function api(path, { method = "GET", body, headers = {} } = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const init = {
      method,
      credentials: "omit",
      cache: "no-store",
      headers: { Accept: "application/json", Authorization: "Bearer " + token, ...headers },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { detail: "The server could not be reached. Check your connection." });
    }
    const data = await response.json().catch(() => ({}));
    // Only the token that was refused signs out: a late answer to an older one must not.
    if (response.status === 401 && sessionStorage.getItem(TOKEN_KEY) === token) {
      signOut("That key or token was not accepted. Paste it again to sign in.");
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  function explain(error) {
    const code = error.problem && error.problem.code;
    if (code === "version_conflict") {
      return "Someone changed this order since you opened it. Reload it and try again.";
    }
    const hint = error.problem && error.problem.hint;
    return hint ? error.message + " (" + hint + ")" : error.message;
  }

  // ---- sign in and out ------------------------------------------------------------

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    if ($("detail").open) $("detail").close();
    $("app").hidden = true;
    $("signin").hidden = false;
    show($("signin-error"), message);
    $("token").value = "";
    $("token").focus();
  }

  async function signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      await Promise.all([loadStats(), loadOrders(), loadProblems()]);
    } catch (error) {
      if (error.status !== 401) signOut(explain(error));
      return;
    }
    $("signin").hidden = true;
    $("app").hidden = false;
    show($("signin-error"), "");
    $("app").querySelector("h1").focus();
  }

  // ---- stats and chart -------------------------------------------------------------

  async function loadStats() {
    const stats = await api("/api/orders/stats/summary");
    $("stat-total").textContent = stats.total_orders;
    const revenue = Object.entries(stats.revenue).map(([cur, amount]) => formatMoney(amount, cur));
    $("stat-revenue").textContent = revenue.length ? revenue.join(" · ") : formatMoney(0, "USD");
    $("stat-pending").textContent = stats.by_status.pending || 0;
    $("stat-delivered").textContent = stats.by_status.delivered || 0;
    drawChart(stats.per_day);
  }

  function drawChart(perDay) {
    const counts = new Map(perDay.map((d) => [d.day, d.orders]));
    const days = [];
    const today = new Date();
    for (let i = CHART_DAYS - 1; i >= 0; i--) {
      const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
      const key = d.toISOString().slice(0, 10);
      days.push({ date: d, orders: counts.get(key) || 0 });
    }
    const peak = Math.max(...days.map((d) => d.orders));
    const max = Math.max(1, peak);
    const svg = $("chart");
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const width = 600 / CHART_DAYS;
    days.forEach((d, i) => {
      const h = d.orders ? Math.max((d.orders / max) * 118, 3) : 1;
      const bar = document.createElementNS(ns, "rect");
      bar.setAttribute("x", i * width + 1);
      bar.setAttribute("y", 120 - h);
      bar.setAttribute("width", width - 2);
      bar.setAttribute("height", h);
      bar.setAttribute("class", d.orders ? "bar" : "bar empty");
      const title = document.createElementNS(ns, "title");
      title.textContent = dateOnly.format(d.date) + ": " + d.orders;
      bar.append(title);
      svg.append(bar);
    });
    $("chart-from").textContent = dateOnly.format(days[0].date);
    $("chart-max").textContent = peak ? "most in a day: " + peak : "no orders yet";
    $("chart-to").textContent = dateOnly.format(days[days.length - 1].date);
    const total = days.reduce((sum, d) => sum + d.orders, 0);
    const busiest = days.reduce((a, b) => (b.orders > a.orders ? b : a));
    $("chart-summary").textContent =
      total + " orders in the last " + CHART_DAYS + " days" +
      (total ? "; most on " + dateOnly.format(busiest.date) + " (" + busiest.orders + ")." : ".");
  }

  // ---- the order list --------------------------------------------------------------

  // ---- open problem reports -------------------------------------------------------

  async function loadProblems() {
    const open = await api("/api/problems/?limit=100");
    $("problems").hidden = !open.length;
    $("problems-count").textContent = open.length === 100 ? "100+" : String(open.length);
    $("problems-list").replaceChildren(...open.map((p) =>
      el("li", {},
        el("button", { type: "button", class: "link", onclick: () => openOrder(p.order_id) },
          p.order_number),
        " · " + label(p.kind.replace("_", " ")) + " · ",
        el("time", { datetime: p.created_at }, when(p.created_at)))));
  }

  async function loadOrders() {
    const params = new URLSearchParams({ limit: PAGE_SIZE });
    if (state.status) params.set("status", state.status);
    if (state.search) params.set("search", state.search);
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) params.set("cursor", cursor);
    const page = await api("/api/orders/?" + params);
    state.next = page.next_cursor;
    renderOrders(page.orders);
  }

  function renderOrders(orders) {
    const rows = orders.map((o) =>
      el("tr", { "data-number": o.order_number },
        el("td", { class: "select" }, el("input", {
          type: "checkbox", "aria-label": "Select " + o.order_number,
          ...(state.selected.has(o.id) ? { checked: "" } : {}),
          onchange: (event) => select(o, event.target.checked),
        })),
        el("th", { scope: "row" },
          el("button", { type: "button", class: "link", onclick: () => openOrder(o.id) }, o.order_number)),
        el("td", {}, o.customer_name, el("span", { class: "muted block" }, o.customer_email || "")),
        el("td", {}, el("span", { class: "badge badge-" + o.status }, label(o.status))),
        el("td", { class: "num" }, formatMoney(o.total, o.currency)),
        el("td", {}, el("time", { datetime: o.created_at }, when(o.created_at)))));
    document.querySelector("#orders tbody").replaceChildren(...rows);
    state.page = orders;
    $("select-all").checked = orders.length > 0 && orders.every((o) => state.selected.has(o.id));
    $("empty").hidden = orders.length > 0;
    $("prev").disabled = state.cursors.length < 2;
    $("next").disabled = !state.next;
    $("page-info").textContent = "Page " + state.cursors.length;
  }

  // ---- selection and bulk status changes ------------------------------------------

  function select(order, on) {
    if (on) state.selected.set(order.id, order.order_number);
    else state.selected.delete(order.id);
    selectionChanged();
  }

  function selectionChanged() {
    const n = state.selected.size;
    $("bulk-count").textContent = n + " selected";
    $("bulk-apply").disabled = n === 0;
  }

  async function applyBulk(status) {
    const ids = [...state.selected.keys()];
    show($("list-error"), "");
    let outcome;
    try {
      outcome = await api("/api/orders/bulk/status", { method: "POST", body: { status, orders: ids } });
    } catch (error) {
      show($("list-error"), explain(error));
      return;
    }
    const failed = outcome.results.filter((r) => !r.ok);
    const result = $("bulk-result");
    result.replaceChildren(el("p", {}, outcome.succeeded + " marked as " + status +
      (failed.length ? "; " + failed.length + " not changed:" : ".")));
    if (failed.length) {
      result.append(el("ul", {}, ...failed.map((r) =>
        el("li", {}, (state.selected.get(r.order) || r.order) + ": " + r.problem.detail))));
    }
    result.hidden = false;
    outcome.results.filter((r) => r.ok).forEach((r) => state.selected.delete(r.order));
    selectionChanged();
    await reloadList(false);
    loadStats().catch(() => {});
  }

  async function reloadList(resetPaging) {
    if (resetPaging) state.cursors = [null];
    try {
      show($("list-error"), "");
      await loadOrders();
    } catch (error) {
      show($("list-error"), explain(error));
    }
  }

  // ---- one order -------------------------------------------------------------------

  async function openOrder(id) {
    show($("detail-error"), "");
    show($("detail-message"), "");
    try {
      const [order, parcels] = await Promise.all([
        api("/api/orders/" + encodeURIComponent(id)),
        api("/api/orders/" + encodeURIComponent(id) + "/shipments"),
      ]);
      renderOrder(order);
      renderShipments(parcels);
    } catch (error) {
      show($("list-error"), explain(error));
      return;
    }
    if (!$("detail").open) $("detail").showModal();
  }

  function fact(term, value) {
    return value ? [el("dt", {}, term), el("dd", {}, value)] : [];
  }

  function renderOrder(order) {
    state.order = order;
    const money = (v) => formatMoney(v, order.currency);
    $("detail-heading").textContent = "Order " + order.order_number;
    $("detail-status").textContent = label(order.status);
    $("detail-status").className = "badge badge-" + order.status;
    $("detail-track").href = order.tracking_url;
    $("detail-lines").replaceChildren(...order.line_items.map((l) =>
      el("tr", {}, el("td", {}, l.name, l.sku ? el("span", { class: "muted block" }, l.sku) : null),
        el("td", { class: "num" }, String(l.quantity)),
        el("td", { class: "num" }, money(l.unit_price)),
        el("td", { class: "num" }, money(l.line_total)))));
    $("detail-totals").replaceChildren(
      ...[["Subtotal", order.subtotal], ["Shipping", order.shipping_fee], ["Total", order.total]].map(
        ([name, v]) => el("tr", {}, el("th", { scope: "row", colspan: "3" }, name), el("td", { class: "num" }, money(v)))));
    const a = order.shipping_address;
    const lines = (parts) => parts.filter(Boolean).flatMap((line) => [line, el("br")]);
    $("detail-customer").replaceChildren(
      ...lines([order.customer_name, order.customer_email, order.customer_phone]));
    // A gift's label carries the recipient, not the customer.
    $("detail-ship-to").replaceChildren(
      ...lines([a.recipient_name && "For " + a.recipient_name, a.recipient_phone, a.line1, a.line2,
        [a.postal_code, a.city, a.region].filter(Boolean).join(" "), a.country]));
    $("detail-shipping").replaceChildren(
      ...fact("Carrier", order.carrier), ...fact("Tracking number", order.tracking_number),
      ...fact("Delivered", order.delivered_at && when(order.delivered_at)),
      ...fact("Estimated delivery", !order.delivered_at && order.status !== "cancelled" &&
        order.estimated_delivery && dateOnly.format(new Date(order.estimated_delivery))),
      ...fact("Payment method", order.payment_method));
    $("detail-notes").replaceChildren(
      ...fact("From the customer", order.customer_notes), ...fact("Internal", order.internal_notes));
    if (!order.customer_notes && !order.internal_notes) {
      $("detail-notes").replaceChildren(el("dd", { class: "muted" }, "None"));
    }
    $("detail-history").replaceChildren(...order.status_history.slice().reverse().map((e) =>
      el("li", {},
        el("span", { class: "event-label" }, eventLabel(e)), " ",
        el("time", { datetime: (e.data && e.data.at) || e.created_at },
          when((e.data && e.data.at) || e.created_at)),
        el("span", { class: "muted" }, " · " + e.actor),
        e.note ? el("p", { class: "event-note" }, e.note) : null)));
    renderProblems(order);
    renderPayment(order);
    renderActions(order);
    $("ship-form").hidden = true;
    $("edit-form").hidden = true;
    $("edit-diff").hidden = true;
  }

  // A parcel: carrier and number (linked), the carrier's latest word, what it holds, and its
  // scans newest first.
  function renderShipments(parcels) {
    $("detail-shipments-section").hidden = !parcels.length;
    $("detail-shipments").replaceChildren(...parcels.map((s, i) =>
      el("li", { "data-shipment": s.id },
        el("span", { class: "event-label" }, "Parcel " + (i + 1) + " · " +
          (s.status ? label(s.status.replace(/_/g, " ")) : "no carrier scan yet")), " ",
        s.status_at ? el("time", { datetime: s.status_at }, when(s.status_at)) : null,
        el("p", { class: "event-note" }, s.carrier + " ",
          s.carrier_url ? el("a", { href: s.carrier_url, target: "_blank", rel: "noopener noreferrer" },
            s.tracking_number) : s.tracking_number),
        el("p", { class: "muted" }, s.lines.map((l) => l.quantity + " × " + l.name).join(", ")),
        el("ol", { class: "timeline" }, ...s.events.slice().reverse().map((e) =>
          el("li", {}, label(e.kind.replace(/_/g, " ")), " ",
            el("time", { datetime: e.at }, when(e.at)),
            e.location ? el("span", { class: "muted" }, " · " + e.location) : null,
            e.description ? el("p", { class: "event-note" }, e.description) : null))))));
  }

  function renderProblems(order) {
    $("detail-problems-section").hidden = !order.problems.length;
    $("detail-problems").replaceChildren(...order.problems.map((p) =>
      el("li", { "data-problem": p.id },
        el("span", { class: "event-label" }, label(p.kind.replace("_", " ")) + " · " + p.status), " ",
        el("time", { datetime: p.created_at }, when(p.created_at)),
        el("p", { class: "event-note" }, p.details),
        p.resolution ? el("p", { class: "event-note" }, "Resolved: " + p.resolution) : null,
        p.status === "open" ? resolveForm(p) : null)));
  }

  function renderPayment(order) {
    const money = (v) => formatMoney(v, order.currency);
    $("detail-payment").replaceChildren(
      label(order.payment_status.replace("_", " ")) + " · paid " + money(order.amount_paid) +
        (Number(order.amount_refunded) > 0 ? " · refunded " + money(order.amount_refunded) : ""),
      order.payment_url ? " · " : "",
      order.payment_url ? el("a", { href: order.payment_url, rel: "noopener", target: "_blank" },
        "payment link") : "");
    $("detail-payments").replaceChildren(...order.payments.map((p) =>
      el("li", { "data-payment": p.id },
        el("span", { class: "event-label" },
          label(p.kind === "checkout" ? "link" : p.kind) + " " + money(p.amount) + " · " + p.state),
        " ", el("time", { datetime: p.created_at }, when(p.created_at)),
        el("span", { class: "muted" }, " · " + [p.provider, p.method, p.reference].filter(Boolean).join(", ")),
        p.last_error ? el("p", { class: "event-note" }, p.last_error) : null)));
    const refundable = Number(order.amount_paid) - Number(order.amount_refunded);
    const owed = Number(order.total) - Number(order.amount_paid);
    $("payment-actions").replaceChildren(
      refundable > 0 ? moneyForm("refund-form", "Refund", [["amount", "Amount (default: all " +
        money(refundable) + ")", false], ["reason", "Reason", false]], "/refunds", "Refund recorded.") : null,
      owed > 0 && order.status !== "cancelled" ? moneyForm("payment-form", "Record payment",
        [["method", "Method (cash, transfer…)", true], ["amount", "Amount", true], ["reference", "Reference", false]],
        "/payments", "Payment recorded.") : null);
  }

  function moneyForm(id, title, fields, path, done) {
    const inputs = fields.map(([name, text, required]) =>
      el("input", { name, "aria-label": text, placeholder: text, ...(required ? { required: "" } : {}) }));
    return el("form", {
      class: "inline-form", id,
      onsubmit: async (event) => {
        event.preventDefault();
        show($("detail-error"), "");
        const body = {};
        for (const input of inputs) if (input.value.trim()) body[input.name] = input.value.trim();
        try {
          await api("/api/orders/" + encodeURIComponent(state.order.id) + path, { method: "POST", body });
        } catch (error) {
          show($("detail-error"), explain(error));
          return;
        }
        await openOrder(state.order.id);
        show($("detail-message"), done);
      },
    }, ...inputs, el("button", { type: "submit", class: "button small" }, title));
  }

  function resolveForm(problem) {
    const note = el("input", { name: "note", required: "", maxlength: "2000",
      "aria-label": "What was done (shown to the customer)" });
    return el("form", {
      class: "inline-form",
      onsubmit: async (event) => {
        event.preventDefault();
        show($("detail-error"), "");
        try {
          await api("/api/problems/" + encodeURIComponent(problem.id) + "/resolve", {
            method: "POST", body: { note: note.value.trim() },
          });
        } catch (error) {
          show($("detail-error"), explain(error));
          return;
        }
        await openOrder(state.order.id);
        show($("detail-message"), "The problem is resolved; the customer sees your note.");
        loadProblems().catch(() => {});
      },
    }, note, el("button", { type: "submit", class: "button small" }, "Resolve"));
  }

  const EVENT_LABELS = {
    edited: "Edited", return_requested: "Return requested", return_approved: "Return approved",
    return_rejected: "Return rejected", return_received: "Returned items received",
    return_refunded: "Return refunded",
  };

  function eventLabel(e) {
    if (e.kind === "created") return "Created";
    if (e.kind === "note") return "Note";
    if (e.kind === "tracking_updated") return "Tracking updated";
    if (e.kind === "problem_reported") return "Problem reported";
    if (e.kind === "problem_resolved") return "Problem resolved";
    if (e.kind === "shipment_created") return "Shipment added";
    if (e.kind.startsWith("shipment_")) return "Parcel: " + e.kind.slice(9).replace(/_/g, " ");
    if (EVENT_LABELS[e.kind]) return EVENT_LABELS[e.kind];
    if (e.kind.startsWith("payment_")) return "Payment " + e.kind.slice(8);
    return (e.from_status ? label(e.from_status) + " → " : "") + label(e.to_status || e.kind);
  }

  function renderActions(order) {
    const buttons = order.allowed_next.map((status) =>
      el("button", {
        type: "button",
        class: status === "cancelled" ? "button danger" : "button",
        onclick: () => chooseAction(status),
      }, status === "cancelled" ? "Cancel order" : "Mark as " + status));
    if (["pending", "confirmed", "processing"].includes(order.status)) {
      buttons.unshift(el("button", { type: "button", class: "button", onclick: () => startEdit() },
        "Edit order"));
    }
    $("detail-actions").replaceChildren(...buttons);
    if (!buttons.length) $("detail-actions").append(el("p", { class: "muted" }, "This order is final."));
  }

  // ---- editing an order ----------------------------------------------------------------

  const ADDRESS_FIELDS = { line1: "edit-line1", line2: "edit-line2", city: "edit-city",
    region: "edit-region", postal_code: "edit-postal", country: "edit-country",
    recipient_name: "edit-recipient" };

  async function startEdit() {
    const order = state.order;
    show($("detail-error"), "");
    let products;
    try {
      products = await api("/api/agents/" + order.agent_id + "/products?include_inactive=false");
    } catch (error) {
      show($("detail-error"), explain(error));
      return;
    }
    const known = new Set(products.map((p) => p.sku));
    // Catalog lines are edited here; custom lines (no catalog sku) stay as they are.
    const lines = new Map();
    order.line_items.filter((l) => l.sku && known.has(l.sku)).forEach((l) => {
      const line = lines.get(l.sku) || { sku: l.sku, name: l.name, quantity: 0 };
      line.quantity += l.quantity;
      lines.set(l.sku, line);
    });
    state.edit = { products, lines };
    renderEditLines();
    $("edit-add-sku").replaceChildren(el("option", { value: "" }, "Choose a product"),
      ...products.map((p) => el("option", { value: p.sku }, p.name + " (" + p.sku + ", " +
        formatMoney(p.unit_price, order.currency) + ")")));
    const a = order.shipping_address;
    Object.entries(ADDRESS_FIELDS).forEach(([key, id]) => { $(id).value = a[key] || ""; });
    $("ship-form").hidden = true;
    $("edit-diff").hidden = true;
    $("edit-form").hidden = false;
    $("edit-form").querySelector("input").focus();
  }

  function renderEditLines() {
    $("edit-lines").replaceChildren(...[...state.edit.lines.values()].map((line) =>
      el("tr", {}, el("td", {}, line.name, el("span", { class: "muted block" }, line.sku)),
        el("td", { class: "num" }, el("input", {
          type: "number", min: "0", max: "1000", value: String(line.quantity),
          "aria-label": "Quantity of " + line.name,
          onchange: (event) => { line.quantity = Number(event.target.value) || 0; },
        })))));
  }

  function addEditLine() {
    const sku = $("edit-add-sku").value;
    const quantity = Number($("edit-add-qty").value) || 0;
    if (!sku || quantity < 1) return;
    const product = state.edit.products.find((p) => p.sku === sku);
    const line = state.edit.lines.get(sku) || { sku, name: product.name, quantity: 0 };
    line.quantity += quantity;
    state.edit.lines.set(sku, line);
    renderEditLines();
  }

  function editBody() {
    const order = state.order;
    const body = {};
    const items = [...state.edit.lines.values()].filter((l) => l.quantity > 0)
      .map((l) => ({ sku: l.sku, quantity: l.quantity }));
    const before = new Map();
    order.line_items.filter((l) => l.sku && state.edit.lines.has(l.sku))
      .forEach((l) => before.set(l.sku, (before.get(l.sku) || 0) + l.quantity));
    const same = items.length === before.size && items.every((i) => before.get(i.sku) === i.quantity);
    if (!same) body.items = items;
    const address = {};
    Object.entries(ADDRESS_FIELDS).forEach(([key, id]) => {
      const value = $(id).value.trim();
      if (value) address[key] = key === "country" ? value.toUpperCase() : value;
    });
    const old = order.shipping_address;
    const changed = Object.keys(ADDRESS_FIELDS).some((k) => (address[k] || "") !== (old[k] || ""));
    // The phone of a gift's recipient is not edited here: keep it.
    if (changed) body.shipping_address = { ...(old.recipient_phone ? { recipient_phone: old.recipient_phone } : {}), ...address };
    return body;
  }

  function describeLines(lines, currency) {
    return lines.map((l) => l.quantity + " × " + l.name + " (" + formatMoney(l.unit_price, currency) + ")").join(", ");
  }

  function describeAddress(a) {
    return [a.recipient_name && "For " + a.recipient_name, a.line1, a.line2,
      [a.postal_code, a.city, a.region].filter(Boolean).join(" "), a.country].filter(Boolean).join(", ");
  }

  async function reviewEdit() {
    const order = state.order;
    show($("detail-error"), "");
    const body = editBody();
    if (!Object.keys(body).length) {
      show($("detail-error"), "Nothing was changed.");
      return;
    }
    let plan;
    try {
      plan = await api("/api/orders/" + encodeURIComponent(order.id) + "?dry_run=true", {
        method: "PATCH", body, headers: { "If-Match": '"' + order.version + '"' },
      });
    } catch (error) {
      show($("detail-error"), explain(error));
      return;
    }
    state.edit.body = body;
    const cur = plan.currency;
    const facts = [];
    if (plan.changed.includes("items")) {
      facts.push(...fact("Items before", describeLines(plan.before.line_items, cur)),
        ...fact("Items after", describeLines(plan.after.line_items, cur)));
    }
    if (plan.changed.includes("shipping_address")) {
      facts.push(...fact("Ship to before", describeAddress(plan.before.shipping_address)),
        ...fact("Ship to after", describeAddress(plan.after.shipping_address)));
    }
    const diff = Number(plan.difference);
    facts.push(...fact("Total", formatMoney(plan.before.total, cur) + " → " + formatMoney(plan.after.total, cur)),
      ...fact("Difference", diff === 0 ? "None" : (diff > 0 ? "+" : "−") + formatMoney(Math.abs(diff), cur) +
        (diff > 0 ? " (the customer owes more)" : " (to refund)")));
    const moved = Object.entries(plan.stock);
    if (moved.length) {
      facts.push(...fact("Stock", moved.map(([sku, q]) => sku + (q > 0 ? ": " + q + " taken" : ": " + -q + " returned")).join(", ")));
    }
    $("edit-diff-facts").replaceChildren(...facts);
    $("edit-form").hidden = true;
    $("edit-diff").hidden = false;
    $("edit-diff-heading").focus();
  }

  async function saveEdit() {
    const order = state.order;
    show($("detail-error"), "");
    let updated;
    try {
      updated = await api("/api/orders/" + encodeURIComponent(order.id), {
        method: "PATCH", body: state.edit.body, headers: { "If-Match": '"' + order.version + '"' },
      });
    } catch (error) {
      showWriteError(error, order);
      return;
    }
    $("edit-diff").hidden = true;
    await showSaved(updated, "Order " + updated.order_number + " is saved: total " +
      formatMoney(updated.total, updated.currency) + ".");
  }

  // A change to the open order failed: say why, and offer a reload when it changed meanwhile.
  function showWriteError(error, order) {
    show($("detail-error"), explain(error));
    if (error.problem && error.problem.code === "version_conflict") {
      $("detail-error").append(" ", el("button", {
        type: "button", class: "button small", onclick: () => openOrder(order.id),
      }, "Reload order"));
    }
  }

  // A change to the open order went through: show the order as it is now, and refresh the
  // list and the figures behind it.
  async function showSaved(updated, message) {
    await openOrder(updated.id);
    show($("detail-message"), message);
    $("detail-heading").focus(); // the button that was pressed is gone
    reloadList(false);
    loadStats().catch(() => {});
  }

  function chooseAction(status) {
    if (status === "shipped") {
      $("ship-form").hidden = false;
      $("ship-carrier").focus();
      return;
    }
    if (status === "cancelled" &&
        !window.confirm("Cancel order " + state.order.order_number + "? Reserved stock is returned.")) {
      return;
    }
    changeStatus({ status });
  }

  async function changeStatus(change) {
    const order = state.order;
    show($("detail-error"), "");
    show($("detail-message"), "");
    let updated;
    try {
      updated = await api("/api/orders/" + encodeURIComponent(order.id) + "/status", {
        method: "PATCH",
        body: change,
        headers: { "If-Match": '"' + order.version + '"' },
      });
    } catch (error) {
      showWriteError(error, order);
      return;
    }
    await showSaved(updated, "Order " + updated.order_number + " is now " + updated.status + ".");
  }


  // ---- webhooks ----------------------------------------------------------------------

  async function loadWebhooks() {
    const endpoints = await api("/api/webhooks/");
    const rows = endpoints.map((w) =>
      el("tr", { "data-endpoint": w.id },
        el("th", { scope: "row", class: "wrap" }, w.url,
          w.description ? el("span", { class: "muted block" }, w.description) : null),
        el("td", {}, w.event_types.length ? w.event_types.join(", ") : "All events"),
        el("td", {},
          el("span", { class: "badge " + (w.enabled ? "badge-delivered" : "badge-cancelled") },
            w.enabled ? "Enabled" : "Disabled"),
          w.disabled_reason ? el("span", { class: "muted block" }, w.disabled_reason) : null),
        el("td", {}, el("div", { class: "row wrap-row" },
          el("button", { type: "button", class: "button small", onclick: () => loadDeliveries(w) },
            "Deliveries"),
          el("button", { type: "button", class: "button small", onclick: () => sendTest(w) }, "Send test"),
          el("button", { type: "button", class: "button small", onclick: () => toggle(w) },
            w.enabled ? "Disable" : "Enable")))));
    document.querySelector("#webhook-list tbody").replaceChildren(...rows);
    $("webhook-empty").hidden = endpoints.length > 0;
  }

  async function webhookAction(work) {
    show($("webhook-error"), "");
    try {
      await work();
    } catch (error) {
      show($("webhook-error"), explain(error));
    }
  }

  function toggle(w) {
    return webhookAction(async () => {
      await api("/api/webhooks/" + w.id, { method: "PATCH", body: { enabled: !w.enabled } });
      await loadWebhooks();
    });
  }

  function sendTest(w) {
    return webhookAction(async () => {
      await api("/api/webhooks/" + w.id + "/test", { method: "POST" });
      await loadDeliveries(w);
    });
  }

  function loadDeliveries(w) {
    return webhookAction(async () => {
      const list = await api("/api/webhooks/" + w.id + "/deliveries?limit=20");
      const rows = list.map((d) =>
        el("tr", { "data-delivery": d.id },
          el("td", {}, d.type, el("span", { class: "muted block" }, d.webhook_id)),
          el("td", {}, el("span", { class: "badge badge-" + (d.state === "succeeded" ? "delivered" : d.state === "failed" ? "cancelled" : "pending") }, label(d.state))),
          el("td", { class: "num" }, String(d.attempts)),
          el("td", {}, d.last_status ? "HTTP " + d.last_status : d.last_error || "–"),
          el("td", {}, el("time", { datetime: d.last_attempt_at || d.created_at },
            when(d.last_attempt_at || d.created_at)),
            d.next_attempt_at && d.attempts ? el("span", { class: "muted block" }, "next " + when(d.next_attempt_at)) : null),
          el("td", {},
            el("button", { type: "button", class: "button small", onclick: () => redeliver(w, d) }, "Redeliver"))));
      document.querySelector("#delivery-list tbody").replaceChildren(...rows);
      $("delivery-empty").hidden = list.length > 0;
      $("deliveries-heading").textContent = "Recent deliveries to " + w.url;
      $("deliveries").hidden = false;
      $("deliveries-heading").focus();
    });
  }

  function redeliver(w, d) {
    return webhookAction(async () => {
      await api("/api/webhooks/" + w.id + "/deliveries/" + d.id + "/redeliver", { method: "POST" });
      await loadDeliveries(w);
    });
  }

  // ---- returns -----------------------------------------------------------------------

  const RETURN_STEPS = {
    requested: [["approve", "Approve"], ["reject", "Reject"]],
    approved: [["receive", "Mark received"], ["reject", "Reject"]],
    received: [["refund", "Refund"]],
  };

  async function loadReturns() {
    const wanted = $("returns-state").value;
    const list = await api("/api/returns/?limit=100" + (wanted ? "&state=" + wanted : ""));
    const rows = list.map((r) =>
      el("tr", { "data-return": r.id },
        el("th", { scope: "row" },
          el("button", { type: "button", class: "link", onclick: () => openOrder(r.order_id) }, r.order_number)),
        el("td", { class: "wrap" }, r.lines.map((l) => l.quantity + " × " + l.name).join(", "),
          r.reason ? el("span", { class: "muted block" }, "“" + r.reason + "”") : null),
        el("td", {}, el("span", { class: "badge badge-" + (r.state === "refunded" ? "delivered" : r.state === "rejected" ? "cancelled" : "pending") }, label(r.state))),
        el("td", { class: "num" }, formatMoney(r.refunded || r.amount, r.currency)),
        el("td", {}, el("time", { datetime: r.created_at }, when(r.created_at))),
        el("td", {}, el("div", { class: "row wrap-row" }, ...(RETURN_STEPS[r.state] || []).map(([step, text]) =>
          el("button", { type: "button", class: step === "reject" ? "button small danger" : "button small",
            onclick: () => returnStep(r, step) }, text))))));
    document.querySelector("#return-list tbody").replaceChildren(...rows);
    $("returns-empty").hidden = list.length > 0;
  }

  async function returnStep(r, step) {
    show($("returns-error"), "");
    show($("returns-message"), "");
    let note = null;
    if (step === "reject") {
      note = window.prompt("Why is this return rejected? (shown to the customer)", "");
      if (note === null) return;
    }
    let updated;
    try {
      updated = await api("/api/returns/" + encodeURIComponent(r.id) + "/" + step, {
        method: "POST", body: note ? { note } : {},
      });
    } catch (error) {
      show($("returns-error"), explain(error));
      return;
    }
    show($("returns-message"), "Return for " + updated.order_number + " is now " + updated.state +
      (updated.state === "refunded" ? " (" + formatMoney(updated.refunded, updated.currency) + ")." : "."));
    await loadReturns().catch((error) => show($("returns-error"), explain(error)));
  }

  // ---- mail --------------------------------------------------------------------------

  async function loadMail() {
    const mails = await api("/api/mail/?limit=50");
    const rows = mails.map((m) =>
      el("tr", { "data-mail": m.id },
        el("th", { scope: "row" },
          el("button", { type: "button", class: "link", onclick: () => openMail(m.id) },
            m.subject || "(" + m.kind + " email, being prepared)")),
        el("td", {}, m.to_address),
        el("td", {}, el("span", { class: "badge badge-" + (m.state === "sent" ? "delivered" : m.state === "failed" ? "cancelled" : "pending") },
          m.state === "kept" ? "Kept (no mail server)" : label(m.state))),
        el("td", {}, el("time", { datetime: m.created_at }, when(m.created_at)))));
    document.querySelector("#mail-list tbody").replaceChildren(...rows);
    $("mail-empty").hidden = mails.length > 0;
  }

  async function openMail(id) {
    show($("mail-error"), "");
    let m;
    try {
      m = await api("/api/mail/" + encodeURIComponent(id));
    } catch (error) {
      show($("mail-error"), explain(error));
      return;
    }
    $("mail-view-heading").textContent = m.subject || "Email";
    $("mail-facts").replaceChildren(
      ...fact("To", m.to_address), ...fact("Order", m.order_number),
      ...fact("State", m.state === "kept" ? "Kept: no mail server is set up" : label(m.state)),
      ...fact("Message-ID", m.message_id));
    // A sandboxed frame without scripts: the HTML part shown as the customer would see it.
    $("mail-frame").srcdoc = m.html_body || "";
    $("mail-text").textContent = m.text_body || "";
    if (!$("mail-view").open) $("mail-view").showModal();
    $("mail-view-heading").focus();
  }

  // ---- views ---------------------------------------------------------------------------

  function showView(name) {
    document.querySelectorAll(".tabs .tab").forEach((tab) => {
      const active = tab.dataset.view === name;
      tab.setAttribute("aria-pressed", String(active));
      $("view-" + tab.dataset.view).hidden = !active;
    });
    if (name === "webhooks") {
      loadWebhooks().catch((error) => show($("webhook-error"), explain(error)));
      $("webhooks-heading").focus();
    } else if (name === "returns") {
      show($("returns-error"), "");
      loadReturns().catch((error) => show($("returns-error"), explain(error)));
      $("returns-heading").focus();
    } else if (name === "mail") {
      show($("mail-error"), "");
      loadMail().catch((error) => show($("mail-error"), explain(error)));
      $("mail-heading").focus();
    }
  }

  // ---- wiring ----------------------------------------------------------------------

  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.status = $("filter-status").value;
    state.search = $("filter-search").value.trim();
    reloadList(true);
  });
  $("filter-status").addEventListener("change", () => $("filters").requestSubmit());
  $("next").addEventListener("click", () => {
    state.cursors.push(state.next);
    reloadList(false);
  });
  $("prev").addEventListener("click", () => {
    state.cursors.pop();
    reloadList(false);
  });
  $("detail-close").addEventListener("click", () => $("detail").close());
  $("ship-cancel").addEventListener("click", () => {
    $("ship-form").hidden = true;
  });
  $("ship-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const change = {
      status: "shipped",
      carrier: $("ship-carrier").value.trim(),
      tracking_number: $("ship-number").value.trim(),
    };
    if ($("ship-eta").value) change.estimated_delivery = $("ship-eta").value;
    changeStatus(change);
  });

  $("webhook-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { url: $("webhook-url").value.trim() };
    if ($("webhook-types").value) body.event_types = [$("webhook-types").value];
    webhookAction(async () => {
      const created = await api("/api/webhooks/", { method: "POST", body });
      $("webhook-secret-value").textContent = created.secret;
      $("webhook-secret").hidden = false;
      $("webhook-url").value = "";
      await loadWebhooks();
    });
  });
  $("mail-close").addEventListener("click", () => $("mail-view").close());
  $("returns-state").addEventListener("change", () =>
    loadReturns().catch((error) => show($("returns-error"), explain(error))));
  $("select-all").addEventListener("change", (event) => {
    (state.page || []).forEach((o) => select(o, event.target.checked));
    renderOrders(state.page || []);
  });
  $("bulk-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const status = $("bulk-status").value;
    if (!status || !state.selected.size) return;
    if (status === "cancelled" &&
        !window.confirm("Cancel " + state.selected.size + " orders? Reserved stock is returned.")) {
      return;
    }
    applyBulk(status);
  });
  $("edit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    reviewEdit();
  });
  $("edit-add").addEventListener("click", addEditLine);
  $("edit-cancel").addEventListener("click", () => { $("edit-form").hidden = true; });
  $("edit-back").addEventListener("click", () => {
    $("edit-diff").hidden = true;
    $("edit-form").hidden = false;
  });
  $("edit-save").addEventListener("click", saveEdit);
  document.querySelectorAll(".tabs .tab").forEach((tab) =>
    tab.addEventListener("click", () => showView(tab.dataset.view)));

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
})();
