// m365connect console: the live progress of an import (docs/console.md). While the job runs, fetch its
// progress fragment every second and put it in place; once it has finished, load the page again, which
// then holds the results. Without JavaScript the page refreshes itself (<noscript> meta refresh).
(function () {
  "use strict";
  var region = document.getElementById("progress");
  var url = region && region.getAttribute("data-poll");
  if (!url) return;
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("reload"); // signed out, or gone
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("progress-body");
        if (!next) throw new Error("reload");
        if (next.getAttribute("data-finished") === "true") return window.location.reload();
        region.replaceChildren(document.adoptNode(next));
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.location.reload(); });
  }
  window.setTimeout(poll, 1000);
})();
