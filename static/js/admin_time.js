// Times on the admin pages arrive as UTC (<time datetime="ISO">, text "... UTC"); show each in
// the viewer's own zone, naming it, and keep the UTC text as the tooltip. Pages that swap in
// fresh HTML (admin_live.js) call window.adminTimes(root) on it.
(function () {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"});
  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.title = el.textContent + " (" + zone + ")";
      el.textContent = format.format(when);
    });
  }
  window.adminTimes = localize;
  localize(document);
})();
