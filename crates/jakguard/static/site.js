// Progressive enhancement only: every page works without this file.
// Shows the "Print" buttons (hidden without JavaScript, where the page explains how to print).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button.js-print").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { window.print(); });
  });
  // After a failed submission, move focus to the error summary so screen readers hear it.
  var errors = document.getElementById("errors");
  if (errors) { errors.setAttribute("tabindex", "-1"); errors.focus(); }
});
