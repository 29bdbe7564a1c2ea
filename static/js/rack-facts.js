// Rack elevations: hovering or tabbing to a machine shows its state, power and hardware in a tip beside it.
// The live refresh replaces the drawings, so the machine that had keyboard focus gets it back afterwards.
(function () {
  "use strict";
  var tip = document.getElementById("rack-tip");
  if (!tip) return;
  var shown = null;

  function boxOf(target) {
    return target && target.closest ? target.closest("svg.elevation a[data-machine]") : null;
  }

  function show(box) {
    shown = box;
    var state = box.querySelector(".mstate");
    tip.replaceChildren();
    var name = document.createElement("strong");
    name.textContent = box.dataset.machine;
    var line = document.createElement("div");
    line.textContent = state ? state.textContent : box.dataset.state;
    var facts = document.createElement("div");
    facts.className = "facts";
    facts.textContent = box.dataset.facts;
    tip.append(name, line, facts);
    tip.hidden = false;
    var r = (box.querySelector("rect") || box).getBoundingClientRect();
    var left = Math.min(r.left, document.documentElement.clientWidth - tip.offsetWidth - 8);
    tip.style.left = Math.max(4, left + window.scrollX) + "px";
    tip.style.top = r.bottom + window.scrollY + 4 + "px";
  }

  function hide() {
    shown = null;
    tip.hidden = true;
  }

  document.addEventListener("mouseover", function (e) {
    var box = boxOf(e.target);
    if (box && box !== shown) show(box);
    else if (!box && shown && !shown.contains(document.activeElement) && shown !== document.activeElement) hide();
  });
  document.addEventListener("focusin", function (e) {
    var box = boxOf(e.target);
    if (box) show(box); else hide();
  });
  document.addEventListener("focusout", function (e) {
    if (boxOf(e.target) === shown) hide();
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") hide();
  });

  var focused = null;
  document.body.addEventListener("htmx:beforeSwap", function () {
    var box = boxOf(document.activeElement);
    focused = box ? box.dataset.machine : null;
    hide();
  });
  document.body.addEventListener("htmx:afterSwap", function () {
    if (!focused) return;
    var again = document.querySelector('svg.elevation a[data-machine="' + CSS.escape(focused) + '"]');
    focused = null;
    if (again) again.focus();
  });
})();
