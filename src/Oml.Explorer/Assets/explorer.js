// oml explorer: live countdowns and live refresh. The pages work without it (server-rendered); this only updates
// the deadlines every second and swaps in the new page content when the ledger moves (announced politely).
(function () {
  "use strict";
  var body = document.body;
  var offset = Number(body.dataset.now) * 1000 - Date.now(); // server clock minus ours

  function duration(s) {
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, sec = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (d > 0) return d + "d " + two(h) + "h " + two(m) + "m " + two(sec) + "s";
    if (h > 0) return h + "h " + two(m) + "m " + two(sec) + "s";
    if (m > 0) return m + "m " + two(sec) + "s";
    return sec + "s";
  }

  function tick() {
    var now = Math.floor((Date.now() + offset) / 1000);
    var nodes = document.querySelectorAll("[data-deadline]");
    for (var i = 0; i < nodes.length; i++) {
      var left = Number(nodes[i].dataset.deadline) - now;
      var text = left > 0 ? duration(left) + " left" : "passed";
      if (nodes[i].textContent !== text) nodes[i].textContent = text;
    }
  }
  tick();
  setInterval(tick, 1000);

  var height = Number(body.dataset.height);
  if (!(height >= 0) || !window.fetch) return;

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var main = document.getElementById("main"), fresh = doc.getElementById("main");
    var source = document.getElementById("source"), freshSource = doc.getElementById("source");
    if (!main || !fresh) return;
    var focusedId = document.activeElement && document.activeElement.id;
    main.innerHTML = fresh.innerHTML;
    if (source && freshSource) source.innerHTML = freshSource.innerHTML;
    body.dataset.height = doc.body.dataset.height;
    body.dataset.now = doc.body.dataset.now;
    offset = Number(doc.body.dataset.now) * 1000 - Date.now();
    if (focusedId) { var again = document.getElementById(focusedId); if (again) again.focus(); }
    tick();
    var live = document.getElementById("live");
    if (live) live.textContent = "Updated to ledger height " + doc.body.dataset.height + ".";
  }

  function wait() {
    fetch("/api/wait?height=" + height, { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (head) {
        if (head.height === height) return;
        height = head.height;
        return fetch(location.pathname + location.search, { cache: "no-store" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) { if (html) swap(html); });
      })
      .then(function () { setTimeout(wait, 250); }, function () { setTimeout(wait, 5000); });
  }
  wait();
})();
