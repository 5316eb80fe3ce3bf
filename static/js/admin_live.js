// The overview keeps itself current: every data-refresh seconds the same URL (range included)
// is fetched and its #live part swapped in, so the reader keeps the scroll position. Nothing
// is fetched while the tab is hidden; a failed fetch or a signed-out answer keeps what is shown.
(function () {
  var live = document.getElementById("live");
  if (!live || !window.fetch) return;
  var every = Number(live.getAttribute("data-refresh") || 10) * 1000;
  function refresh() {
    if (document.hidden) return;
    fetch(location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        var fresh = html && new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (!fresh) return;
        live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
        if (window.adminTimes) window.adminTimes(live);
        live.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {});     // the server is away: try again next time
  }
  setInterval(refresh, every);
})();
