// Live updates: Server-Sent Events from /live, or polling /live.json every 2 s where
// EventSource is missing, is refused or keeps failing. The page was complete without this
// script.
(function () {
  "use strict";
  var me = document.currentScript;
  var src = me && me.getAttribute("data-src");
  if (!src) return;
  var pollUrl = src.replace(/\/live(\?|$)/, "/live.json$1");

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) t.textContent = d.toLocaleString();
    });
  }

  function apply(parts) {
    Object.keys(parts).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && el.hasAttribute("data-live")) {
        el.innerHTML = parts[id];
        localTimes(el);
      }
    });
  }

  function poll() {
    fetch(pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (parts) { if (parts) apply(parts); })
      .catch(function () {})
      .then(function () { setTimeout(poll, 2000); });
  }

  localTimes(document);
  if (!("EventSource" in window)) { poll(); return; }
  var failures = 0;
  var source = new EventSource(src);
  source.addEventListener("update", function (e) {
    failures = 0;
    apply(JSON.parse(e.data));
  });
  source.onerror = function () {
    failures += 1;
    // refused (429: this session's streams are all open elsewhere; signed out), which the
    // browser never retries, or a proxy that buffers or drops SSE: poll instead
    if (source.readyState === EventSource.CLOSED || failures >= 3) { source.close(); poll(); }
  };
})();
