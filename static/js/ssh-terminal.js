// The SSH terminal page, and an admin's read-only view of an open session: xterm.js on a websocket
// (access/consumers.py). Binary frames are the shell's bytes both ways; text frames are JSON notices and
// control (open, resize, close). The terminal fills its box and follows the window's size.
(function () {
  "use strict";
  var root = document.querySelector("[data-terminal], [data-watch]");
  if (!root || typeof Terminal === "undefined") return;
  var watching = root.hasAttribute("data-watch");
  var status = document.querySelector("[data-terminal-status]");
  var endButton = document.querySelector("[data-terminal-end]");
  var replay = document.querySelector("[data-terminal-replay]");
  var form = document.querySelector("[data-terminal-open]");
  var term = new Terminal({ cursorBlink: !watching, scrollback: 5000, fontSize: 14, disableStdin: watching });
  var fit = typeof FitAddon !== "undefined" ? new FitAddon.FitAddon() : null;
  if (fit) term.loadAddon(fit);
  term.open(root);
  if (fit) fit.fit();
  var encoder = new TextEncoder();
  var ws = null, finished = false;

  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function connect(reason) {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(scheme + "//" + location.host + (watching ? root.dataset.watch : root.dataset.terminal));
    ws.binaryType = "arraybuffer";
    root.dataset.state = "connecting";
    say(watching ? "Joining…" : "Connecting through the jump host…");
    ws.addEventListener("open", function () {
      if (!watching) send({ type: "open", cols: term.cols, rows: term.rows, reason: reason || "" });
    });
    ws.addEventListener("message", function (e) {
      if (typeof e.data !== "string") { term.write(new Uint8Array(e.data)); return; }
      var m;
      try { m = JSON.parse(e.data); } catch (err) { return; }
      if (m.type === "session") {
        replay.href = m.replay;
        if (watching) { root.dataset.state = "open"; say("Watching session " + m.id + " (read-only)."); }
      } else if (m.type === "ready") {
        root.dataset.state = "open";
        say("Connected. Everything shown and typed is recorded.");
        if (endButton) endButton.hidden = false;
        term.focus();
      } else if (m.type === "refused") {
        say(m.message, "error");
      } else if (m.type === "error") {
        finished = true;
        root.dataset.state = "failed";
        say(m.message, "error");
      } else if (m.type === "ended") {
        finished = true;
        root.dataset.state = "ended";
        say("The session ended: " + m.message + ".");
        if (endButton) endButton.hidden = true;
        replay.hidden = !replay.href;
      }
    });
    ws.addEventListener("close", function (e) {
      if (endButton) endButton.hidden = true;
      if (!finished) {
        root.dataset.state = "failed";
        say(e.code === 4403 ? "You may not open this." : "Disconnected (" + e.code + "). Reload to connect again.", "error");
      }
    });
  }

  // A paste goes in slices: the server takes at most 4096 bytes a frame.
  term.onData(function (data) {
    if (watching || !ws || ws.readyState !== WebSocket.OPEN) return;
    var bytes = encoder.encode(data);
    for (var i = 0; i < bytes.length; i += 1024) ws.send(bytes.subarray(i, i + 1024));
  });
  term.onResize(function (size) { send({ type: "resize", cols: size.cols, rows: size.rows }); });
  // Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes (the browser's paste event, which xterm.js takes):
  // left to xterm.js, both would be sent to the shell as control characters.
  term.attachCustomKeyEventHandler(function (e) {
    if (e.type !== "keydown" || !e.ctrlKey || !e.shiftKey) return true;
    if (e.code === "KeyC") {
      if (term.hasSelection() && navigator.clipboard) navigator.clipboard.writeText(term.getSelection());
      return false;
    }
    return e.code !== "KeyV";
  });
  var pending = null;
  window.addEventListener("resize", function () {
    if (!fit) return;
    clearTimeout(pending);
    pending = setTimeout(function () { fit.fit(); }, 100);
  });
  if (endButton) endButton.addEventListener("click", function () { send({ type: "close" }); });

  if (form) {
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      form.hidden = true;
      connect(form.elements.reason.value);
    });
  } else {
    connect("");
  }
})();
