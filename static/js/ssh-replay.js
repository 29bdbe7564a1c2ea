// Replays an SSH session's recording (asciicast v2, access/terminal.py) with the vendored asciinema-player.
// "Jump to the end" shows the last screen at once; the player's own controls seek, pause and change speed.
(function () {
  "use strict";
  var root = document.querySelector("[data-replay]");
  if (!root || typeof AsciinemaPlayer === "undefined") return;
  var endButton = document.querySelector("[data-replay-end]");
  var problem = document.querySelector("[data-replay-problem]");
  var player = AsciinemaPlayer.create({ url: root.dataset.replay, fetchOpts: { credentials: "same-origin" } }, root, {
    autoPlay: true,
    preload: true,
    speed: 2,
    idleTimeLimit: 2,
    fit: "width",
    terminalFontSize: "small",
    keystrokeOverlay: false,
  });
  player.addEventListener("ended", function () { root.dataset.replayDone = "true"; });
  player.addEventListener("play", function () { root.dataset.replayDone = "false"; });
  player.addEventListener("error", function () {
    problem.hidden = false;
    problem.textContent = "The recording could not be played.";
  });
  endButton.addEventListener("click", function () {
    Promise.resolve(player.getDuration()).then(function (duration) {
      if (duration == null) return;
      return Promise.resolve(player.seek(duration)).then(function () {
        player.pause();
        root.dataset.replayDone = "true";
      });
    });
  });
})();
