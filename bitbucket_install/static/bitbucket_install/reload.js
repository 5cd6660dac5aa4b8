/* Reloads a page of the app after the seconds its [data-bbi-reload-after] element names,
   as the answer's Retry-After asks, unless the visitor stops it (WCAG 2.2.1: a timed
   change the user can turn off). A file, not an inline script, so that a strict
   Content-Security-Policy allows it; without JavaScript the page keeps its reload button. */
(function () {
  "use strict";
  var box = document.querySelector("[data-bbi-reload-after]");
  if (!box) {
    return;
  }
  var seconds = parseInt(box.getAttribute("data-bbi-reload-after"), 10);
  if (!(seconds > 0)) {
    return;
  }
  // [data-bbi-reload-to]: go to that same-page URL instead (a page that reloads once
  // marks its second load in the query), replacing this entry of the history.
  var target = box.getAttribute("data-bbi-reload-to");
  var timer = window.setTimeout(function () {
    if (target) {
      window.location.replace(target);
    } else {
      window.location.reload();
    }
  }, seconds * 1000);
  var note = box.querySelector("[data-bbi-reload-note]");
  var stop = box.querySelector("[data-bbi-reload-stop]");
  if (note) {
    note.hidden = false;
  }
  if (stop) {
    stop.hidden = false;
    stop.addEventListener("click", function () {
      window.clearTimeout(timer);
      stop.hidden = true;
      if (note) {
        note.hidden = true;
      }
    });
  }
})();
