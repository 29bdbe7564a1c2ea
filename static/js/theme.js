// Loaded in <head>, before the page paints, so a chosen theme does not flash the other one first.
(function () {
  "use strict";
  try {
    var chosen = localStorage.getItem("provisioner-theme");
    if (chosen === "light" || chosen === "dark") document.documentElement.dataset.theme = chosen;
  } catch (e) { /* storage blocked: follow the system */ }
})();
