// Replays an asciicast v2 recording (serialconsole/recording.py) in xterm.js: output events are written at
// their recorded times (idle gaps shortened), markers (who took the keyboard) are listed as they pass.
(function () {
  "use strict";
  var root = document.querySelector("[data-cast]");
  if (!root || typeof Terminal === "undefined") return;
  var playButton = document.querySelector("[data-cast-play]");
  var endButton = document.querySelector("[data-cast-end]");
  var speedSelect = document.querySelector("[data-cast-speed]");
  var clock = document.querySelector("[data-cast-clock]");
  var markers = document.querySelector("[data-cast-markers]");
  var MAX_IDLE_S = 2;
  var term, events = [], index = 0, at = 0, timer = null;

  function reset(header) {
    if (term) term.dispose();
    term = new Terminal({ cols: header.width || 80, rows: header.height || 24, scrollback: 5000, fontSize: 14 });
    term.open(root);
    index = 0; at = 0;
    markers.textContent = "";
    root.dataset.castDone = "false";
  }

  function apply(event) {
    at = event[0];
    if (event[1] === "o") term.write(event[2]);
    else if (event[1] === "m") {
      var item = document.createElement("li");
      item.textContent = at.toFixed(1) + " s: " + event[2];
      markers.appendChild(item);
    }
    clock.textContent = at.toFixed(1) + " s";
  }

  function finish() {
    timer = null;
    playButton.textContent = "Replay";
    // xterm parses what it is given later and draws on the next frame: "done" once the screen shows the end.
    var shown = term;
    term.write("", function () {
      requestAnimationFrame(function () { if (shown === term) root.dataset.castDone = "true"; });
    });
  }

  function step() {
    if (index >= events.length) { finish(); return; }
    apply(events[index]);
    index += 1;
    if (index >= events.length) { finish(); return; }
    var gap = Math.min(events[index][0] - at, MAX_IDLE_S) / Number(speedSelect.value);
    timer = setTimeout(step, Math.max(0, gap * 1000));
  }

  function play() {
    if (timer) { clearTimeout(timer); timer = null; playButton.textContent = "Play"; return; }
    if (index >= events.length) reset(header);
    playButton.textContent = "Pause";
    step();
  }

  var header = {};
  fetch(root.dataset.cast, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
    .then(function (text) {
      var lines = text.split("\n").filter(function (l) { return l.trim(); });
      header = JSON.parse(lines[0]);
      events = lines.slice(1).map(function (l) { return JSON.parse(l); });
      reset(header);
      playButton.disabled = false;
      endButton.disabled = false;
      play();
    })
    .catch(function (err) { clock.textContent = "The recording could not be loaded: " + err.message; });

  playButton.addEventListener("click", play);
  endButton.addEventListener("click", function () {
    if (timer) { clearTimeout(timer); timer = null; }
    while (index < events.length) { apply(events[index]); index += 1; }
    finish();
  });
})();
