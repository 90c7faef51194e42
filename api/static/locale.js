// Shows server-rendered ISO dates and amounts in the visitor's locale. Without this
// script the pages still read fine: the ISO text stays.
"use strict";

(function () {
  const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  // A calendar date has no time zone: format it as the same day everywhere.
  const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });
  const regions = Intl.DisplayNames ? new Intl.DisplayNames(undefined, { type: "region" }) : null;

  function formatMoney(amount, currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(Number(amount));
    } catch (e) {
      return amount + " " + currency;
    }
  }

  function localize(root) {
    root.querySelectorAll("time[data-format]").forEach((el) => {
      const value = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(value.getTime())) return;
      el.textContent = (el.dataset.format === "date" ? dateOnly : dateTime).format(value);
    });
    root.querySelectorAll("data[data-currency]").forEach((el) => {
      el.textContent = formatMoney(el.value, el.dataset.currency);
    });
    if (regions) {
      root.querySelectorAll("[data-region]").forEach((el) => {
        try {
          el.textContent = regions.of(el.dataset.region) || el.dataset.region;
        } catch (e) {
          /* an unknown code keeps its text */
        }
      });
    }
  }

  window.agentOrders = { localize, formatMoney, dateTime, dateOnly };
  document.addEventListener("DOMContentLoaded", () => localize(document));
})();
