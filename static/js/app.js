// provisioner pages: keyboard, theme switch, confirm dialogs and live updates.
// Every page works without this file; it only saves reloads. No inline script anywhere (CSP).
(function () {
  "use strict";

  // --- "/" focuses the search box -------------------------------------------------------
  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    var search = document.querySelector("[data-search]");
    if (search) { e.preventDefault(); search.focus(); search.select(); }
  });

  // --- dark / light switch (the default follows the system) ------------------------------
  function currentTheme() {
    var set = document.documentElement.dataset.theme;
    if (set) return set;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  function labelSwitch(btn) { btn.textContent = currentTheme() === "dark" ? "☀ Light" : "☾ Dark"; }
  document.querySelectorAll("[data-theme-switch]").forEach(function (btn) {
    btn.hidden = false;
    labelSwitch(btn);
    btn.addEventListener("click", function () {
      var next = currentTheme() === "dark" ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      try { localStorage.setItem("provisioner-theme", next); } catch (e) { /* not kept: fine */ }
      labelSwitch(btn);
    });
  });

  // --- machine list: select all, and the confirm dialog for bulk actions ------------------
  var selectAll = document.querySelector("[data-select-all]");
  if (selectAll) {
    selectAll.addEventListener("change", function () {
      document.querySelectorAll("input[name=machine]").forEach(function (b) { b.checked = selectAll.checked; });
    });
  }

  document.querySelectorAll("form[data-confirm-action]").forEach(function (form) {
    var dialog = document.getElementById(form.dataset.confirmAction);
    if (!dialog) return;
    var typed = (form.dataset.typedActions || "").split(",");
    form.addEventListener("submit", function (e) {
      if (form.dataset.confirmed === "1") return;
      // Tagging is not an action to confirm; "every machine tagged X" is listed by the server's confirm page.
      if (e.submitter && e.submitter.hasAttribute("data-no-confirm")) return;
      var withTag = form.querySelector("[name=with_tag]");
      if (withTag && withTag.value) return;
      e.preventDefault();
      var actionSelect = form.querySelector("[name=action]");
      var action = actionSelect.value;
      var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=machine]:checked"));
      var single = form.querySelector("input[type=hidden][name=machine]");
      var names = boxes.map(function (b) { return b.dataset.hostname; });
      if (single) names = [single.dataset.hostname];
      if (single) boxes = [single];
      var guarded = boxes.filter(function (b) { return b.dataset.protected === "1"; })
        .map(function (b) { return b.dataset.hostname; });
      var icon = dialog.querySelector("template[data-protected-icon]");
      var list = dialog.querySelector("[data-names]");
      list.textContent = "";
      names.forEach(function (n) {
        var li = document.createElement("li");
        li.textContent = n;
        if (icon && guarded.indexOf(n) >= 0) {
          li.appendChild(document.createTextNode(" "));
          li.appendChild(icon.content.cloneNode(true));
        }
        list.appendChild(li);
      });
      // A select of actions (the list, the machine's Act form), or one action of the machine's lifecycle panel.
      var label = actionSelect.options ? actionSelect.options[actionSelect.selectedIndex].text
        : (actionSelect.dataset.label || action);
      var profile = form.querySelector("[name=profile]");
      var boot = form.querySelector("[name=boot]");
      var booting = action === "install" && boot && boot.value ? ", " + boot.options[boot.selectedIndex].text + "," : "";
      dialog.querySelector("[data-what]").textContent =
        label + (action === "install" && profile ? " " + profile.value : "") + booting + " on " + names.length +
        " machine(s):";
      var need = typed.indexOf(action) >= 0 ? (names.length === 1 ? names[0] : String(names.length)) : "";
      var box = dialog.querySelector("[data-typed-box]");
      var input = dialog.querySelector("[data-typed]");
      var ok = dialog.querySelector("[data-ok]");
      box.hidden = !need;
      dialog.querySelector("[data-expected]").textContent = need;
      input.value = "";
      ok.disabled = !!need || names.length === 0;
      // Protection refuses this action: say so now rather than after the hostname was typed.
      var refuses = (dialog.dataset.protectedRefuses || "").split(",");
      var blocked = refuses.indexOf(action) >= 0 ? guarded : [];
      var note = dialog.querySelector("[data-protected-note]");
      note.hidden = !blocked.length;
      note.textContent = blocked.length ? "Protected, so " + label.toLowerCase() + " will be refused: " +
        blocked.join(", ") + ". An admin must unprotect " + (blocked.length === 1 ? "it" : "them") +
        " with a reason first." : "";
      if (blocked.length) { box.hidden = true; ok.disabled = true; }
      if (action === "install" && profile && !profile.value) {
        dialog.querySelector("[data-what]").textContent = "Choose the profile to install first.";
        box.hidden = true;
        ok.disabled = true;
      }
      input.oninput = function () { ok.disabled = input.value.trim() !== need; };
      ok.onclick = function () {
        form.querySelector("[name=confirm]").value = input.value.trim();
        form.querySelector("[name=confirmed]").value = "1";
        form.dataset.confirmed = "1";
        dialog.close();
        form.submit();
      };
      dialog.showModal();
      if (need) input.focus();
    });
    dialog.querySelector("[data-cancel]").addEventListener("click", function () { dialog.close(); });
  });

  // A refresh that lands on the login page (the session ended) reloads the page instead of
  // pasting a login form into a table.
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    var url = e.detail.xhr && e.detail.xhr.responseURL;
    if (url && url.indexOf("/login/") >= 0) { e.detail.shouldSwap = false; location.reload(); }
  });

  // --- live updates ------------------------------------------------------------------------
  var live = document.body.dataset.live;
  if (!live || !window.WebSocket) return;

  var status = document.querySelector("[data-live-status]");
  function setStatus(text, cls) {
    if (!status) return;
    status.textContent = text;
    status.className = "live-status " + cls;
  }

  var rendered = new Set();   // event ids already on the page: a replay never doubles a line
  var lastId = parseInt(document.body.dataset.after || "0", 10) || 0;
  document.querySelectorAll("[data-event-id]").forEach(function (el) { rendered.add(parseInt(el.dataset.eventId, 10)); });

  // Partials that re-render from the server when something changed (debounced: a burst is one fetch).
  // Never under a technician's hands: not while a dialog is open or they type in the region,
  // and the rows they ticked stay ticked.
  var refreshTimer = null;
  function busyIn(el) {
    var a = document.activeElement;
    return document.querySelector("dialog[open]") ||
      (a && el.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName) && a.type !== "checkbox");
  }
  function refreshSoon(delay) {
    if (refreshTimer || !window.htmx) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      document.querySelectorAll("[data-refresh]").forEach(function (el) {
        if (busyIn(el)) { refreshSoon(2000); return; }
        var ticked = Array.prototype.map.call(el.querySelectorAll("input[name=machine]:checked"), function (b) { return b.value; });
        window.htmx.ajax("GET", el.dataset.refresh, { target: el, swap: "innerHTML" }).then(function () {
          ticked.forEach(function (v) {
            var box = el.querySelector('input[name=machine][value="' + v + '"]');
            if (box) box.checked = true;
          });
        });
      });
    }, delay);
  }

  var log = document.querySelector("[data-log]");
  var follow = true;
  var pausedBtn = document.querySelector("[data-log-paused]");
  if (log) {
    log.scrollTop = log.scrollHeight;
    log.addEventListener("scroll", function () {
      follow = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
      if (pausedBtn) pausedBtn.hidden = follow;
    });
    if (pausedBtn) pausedBtn.addEventListener("click", function () {
      follow = true; pausedBtn.hidden = true; log.scrollTop = log.scrollHeight;
    });
  }
  var progressBar = document.querySelector("[data-progress]");

  function two(n) { return (n < 10 ? "0" : "") + n; }
  // A line's time as the server prints it (UTC, in a <time> that local-time.js rewrites to the browser's zone).
  function clock(iso) {
    var d = new Date(iso);
    var el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.dataset.local = "time";
    el.textContent = two(d.getUTCHours()) + ":" + two(d.getUTCMinutes()) + ":" + two(d.getUTCSeconds()) + " UTC";
    if (window.provisionerLocalTime) window.provisionerLocalTime.localize(el);
    return el;
  }

  function render(ev) {
    if (rendered.has(ev.id)) return;
    rendered.add(ev.id);
    if (ev.id > lastId) lastId = ev.id;
    document.body.dataset.after = String(lastId);
    if (log) {
      var li = document.createElement("li");
      li.dataset.eventId = ev.id;
      li.className = "k-" + ev.kind;
      var t = document.createElement("span");
      t.className = "t";
      t.appendChild(clock(ev.at));
      t.appendChild(document.createTextNode(" "));
      li.appendChild(t);
      li.appendChild(document.createTextNode(ev.message));
      // A swept-up event (its live message was dropped) can be older than the last one shown.
      var next = null;
      for (var el = log.lastElementChild; el && +el.dataset.eventId > ev.id; el = el.previousElementSibling) next = el;
      log.insertBefore(li, next);
      if (follow) log.scrollTop = log.scrollHeight;
    }
    if (progressBar && ev.kind === "state" && ev.data && ev.data.to === "succeeded") progressBar.value = 100;
    if (ev.kind !== "log") refreshSoon(live === "dashboard" ? 1500 : 150);
  }

  // More events followed the page's last line than a replay sends: the older ones are in the download.
  function gap(info) {
    if (!log) return;
    var li = document.createElement("li");
    li.dataset.eventId = info.upto;
    li.className = "k-gap";
    li.appendChild(document.createTextNode("… earlier lines are not shown here: "));
    var a = document.createElement("a");
    a.href = info.log;
    a.textContent = "download the whole log";
    li.appendChild(a);
    var next = null;
    for (var el = log.lastElementChild; el && +el.dataset.eventId > info.upto; el = el.previousElementSibling) next = el;
    log.insertBefore(li, next);
  }

  var socket = null;
  var retry = 1000;
  var stopped = false;
  function connect() {
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    var path = live === "dashboard" ? "/ws/dashboard/" : "/ws/installs/" + live.split(":")[1] + "/";
    socket = new WebSocket(proto + location.host + path + "?after=" + lastId);
    api.socket = socket;
    socket.onopen = function () { retry = 1000; setStatus("live", "connected"); };
    socket.onmessage = function (msg) {
      var data = JSON.parse(msg.data);
      if (data.events) data.events.forEach(render);
      if (data.event) render(data.event);
      if (data.resync) refreshSoon(10);
      if (data.gap) gap(data.gap);
      if (data.replayed !== undefined) document.body.dataset.replayed = String(data.replayed);
    };
    socket.onclose = function () {
      if (stopped) return;
      setStatus("reconnecting…", "disconnected");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  // Tests and curious technicians can look at the socket; nothing here can send an action.
  var api = { socket: null, rendered: rendered, get lastId() { return lastId; } };
  window.provisionerLive = api;
  window.addEventListener("beforeunload", function () { stopped = true; });
  connect();
})();
