// The batch page: pausing and cancelling ask first, in the page's dialog. The forms are inside the part of the
// page that live updates re-render, so one listener on the document serves the forms of every re-render.
// Without this file the forms post at once, as the dashboard's do.
(function () {
  "use strict";
  var dialog = document.getElementById("batch-confirm");
  if (!dialog) return;
  var pending = null;
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.matches || !form.matches("form[data-confirm]") || form.dataset.confirmed === "1") return;
    e.preventDefault();
    pending = form;
    dialog.querySelector("[data-text]").textContent = form.dataset.confirm;
    dialog.showModal();
    dialog.querySelector("[data-ok]").focus();
  });
  dialog.querySelector("[data-ok]").addEventListener("click", function () {
    if (!pending) return;
    var form = pending;
    pending = null;
    form.dataset.confirmed = "1";
    dialog.close();
    form.submit();
  });
  dialog.querySelector("[data-cancel]").addEventListener("click", function () { pending = null; dialog.close(); });
})();
