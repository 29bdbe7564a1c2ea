// The serial console page: xterm.js on a websocket to the machine's console (serialconsole/consumers.py).
// Binary frames both ways are the serial port's bytes; text frames are JSON notices (who has the keyboard).
(function () {
  "use strict";
  var root = document.querySelector("[data-console]");
  if (!root || typeof Terminal === "undefined") return;
  var status = document.querySelector("[data-console-status]");
  var who = document.querySelector("[data-console-viewers]");
  var take = document.querySelector("[data-console-take]");
  var term = new Terminal({ cols: 80, rows: 24, cursorBlink: true, scrollback: 5000, fontSize: 14 });
  term.open(root);
  term.focus();
  var scheme = location.protocol === "https:" ? "wss:" : "ws:";
  var ws = new WebSocket(scheme + "//" + location.host + root.dataset.console);
  ws.binaryType = "arraybuffer";
  var encoder = new TextEncoder();
  var finished = false;

  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  ws.addEventListener("message", function (e) {
    if (typeof e.data !== "string") { term.write(new Uint8Array(e.data)); return; }
    var m;
    try { m = JSON.parse(e.data); } catch (err) { return; }
    if (m.type === "state") {
      var writing = m.you === "writer";
      root.dataset.role = m.you;
      say(writing ? "You have the keyboard." : (m.writer || "Nobody") + " is typing; you are watching.");
      take.hidden = writing;
      who.textContent = m.viewers.length > 1 ? "On this console: " + m.viewers.join(", ") : "";
    } else if (m.type === "refused") {
      say(m.message, "error");
    } else if (m.type === "error") {
      finished = true;
      say(m.message, "error");
    } else if (m.type === "ended") {
      finished = true;
      say("The console session ended: " + m.message + ". Reload to open it again.");
    }
  });
  ws.addEventListener("close", function (e) {
    take.hidden = true;
    root.dataset.role = "closed";
    if (!finished) say("Disconnected (" + e.code + "). Reload to reconnect.", "error");
  });
  // A paste goes in slices: the server takes at most 4096 bytes a frame (the serial port is slow anyway).
  term.onData(function (data) {
    if (ws.readyState !== WebSocket.OPEN) return;
    var bytes = encoder.encode(data);
    for (var i = 0; i < bytes.length; i += 1024) ws.send(bytes.subarray(i, i + 1024));
  });
  take.addEventListener("click", function () {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "take" }));
    term.focus();
  });
})();
