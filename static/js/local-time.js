// Times in the browser's time zone. The server prints every time as <time datetime="…Z" data-local="fmt">
// in UTC, saying "UTC" (what a page shows without JavaScript); this rewrites the text to local time with the
// zone's short name, keeps UTC in the tooltip, and does the same for parts swapped in later (htmx, live
// refresh) through one MutationObserver. A tooltip that holds a time (an element with data-title-at="…Z"
// data-title-local="fmt") has that UTC text in its title replaced by the local one.
(function () {
  "use strict";
  function two(n) { return (n < 10 ? "0" : "") + n; }
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { zone = ""; }

  function zoneName(d) {
    try {
      var parts = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(d);
      for (var i = 0; i < parts.length; i++) if (parts[i].type === "timeZoneName") return parts[i].value;
    } catch (e) { /* old browser: fall through */ }
    return "";
  }

  // The same text as the server's filter for that format: in local time with the zone's name, or in UTC.
  function format(d, fmt, utc) {
    var f = utc
      ? [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
      : [d.getFullYear(), d.getMonth(), d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
    var date = f[0] + "-" + two(f[1] + 1) + "-" + two(f[2]);
    var hm = two(f[3]) + ":" + two(f[4]);
    var text;
    if (fmt === "time") text = hm + ":" + two(f[5]);
    else if (fmt === "seconds") text = date + " " + hm + ":" + two(f[5]);
    else if (fmt === "short") text = date.slice(5) + " " + hm;
    else text = date + " " + hm;
    return text + " " + (utc ? "UTC" : zoneName(d));
  }

  function localize(el) {
    if (el.dataset.localDone === "1") return;
    var d = new Date(el.getAttribute("datetime"));
    if (isNaN(d.getTime())) return;
    el.dataset.localDone = "1";
    if (!el.title) el.title = el.textContent + (zone ? " · " + zone : "");
    el.textContent = format(d, el.dataset.local);
  }

  function localizeTitle(el) {
    if (el.dataset.titleDone === "1") return;
    var d = new Date(el.dataset.titleAt);
    if (isNaN(d.getTime())) return;
    el.dataset.titleDone = "1";
    var fmt = el.dataset.titleLocal;
    el.title = el.title.replace(format(d, fmt, true), format(d, fmt) + (zone ? " (" + zone + ")" : ""));
  }

  function scan(root) {
    if (root.matches && root.matches("time[data-local]")) localize(root);
    if (root.matches && root.matches("[data-title-at]")) localizeTitle(root);
    if (root.querySelectorAll) {
      root.querySelectorAll("time[data-local]").forEach(localize);
      root.querySelectorAll("[data-title-at]").forEach(localizeTitle);
    }
  }

  // For scripts that build lines themselves (the install log): the same text the server's lines get.
  window.provisionerLocalTime = { localize: localize, format: format };

  function start() {
    scan(document);
    new MutationObserver(function (records) {
      records.forEach(function (r) { r.addedNodes.forEach(function (n) { if (n.nodeType === 1) scan(n); }); });
    }).observe(document.body, { childList: true, subtree: true });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
