// tracker dashboard: live refresh. Fetches the HTML of an element's data-live-src every
// data-live-seconds and swaps it in when it changed; never while the tab is hidden, a
// control inside has focus or text inside is selected. Stops on "X-Live: stop".
"use strict";
(function () {
  var region = document.querySelector("[data-live-src]");
  if (!region) { return; }
  var note = document.querySelector("[data-live-note]");
  var source = region.getAttribute("data-live-src");
  var seconds = Math.max(1, Number(region.getAttribute("data-live-seconds")) || 5);
  var timer = null;
  var failures = 0;
  var stopped = false;
  var last = null;

  function say(text) {
    if (!note) { return; }
    note.textContent = text;
    note.hidden = !text;
  }

  function busy() {
    var focused = document.activeElement;
    if (focused && focused !== document.body && region.contains(focused)) { return true; }
    var selection = window.getSelection ? window.getSelection() : null;
    return !!(selection && !selection.isCollapsed && selection.anchorNode &&
      region.contains(selection.anchorNode));
  }

  function swap(html) {
    if (html === last) { return; }
    var open = [];
    region.querySelectorAll("details[open][id]").forEach(function (d) { open.push(d.id); });
    var scrolled = [];
    region.querySelectorAll(".logs, .scroll, pre.block").forEach(function (el, i) {
      scrolled.push([i, el.scrollTop, el.scrollLeft, el.scrollTop + el.clientHeight >= el.scrollHeight - 4]);
    });
    region.innerHTML = html;
    last = html;
    open.forEach(function (id) {
      var d = document.getElementById(id);
      if (d && d.tagName === "DETAILS") { d.open = true; }
    });
    var now = region.querySelectorAll(".logs, .scroll, pre.block");
    scrolled.forEach(function (s) {
      var el = now[s[0]];
      if (!el) { return; }
      el.scrollLeft = s[2];
      el.scrollTop = s[3] && el.classList.contains("logs") ? el.scrollHeight : s[1];
    });
  }

  function schedule(delay) {
    clearTimeout(timer);
    if (!stopped && !document.hidden) { timer = setTimeout(tick, delay * 1000); }
  }

  function stop(text) {
    stopped = true;
    clearTimeout(timer);
    region.removeAttribute("aria-busy");
    say(text);
  }

  function tick() {
    if (stopped || document.hidden) { return; }
    if (busy()) { schedule(seconds); return; }
    fetch(source, { credentials: "same-origin", redirect: "error", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          stop("Updates stopped: the session ended. Reload the page to log in again.");
          return null;
        }
        if (response.status === 404) {
          stop("Updates stopped: this is gone.");
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        var more = response.headers.get("X-Live") !== "stop";
        return response.text().then(function (html) {
          failures = 0;
          say("");
          if (!busy()) { swap(html); }
          if (more) { schedule(seconds); } else { stop("Finished: no more updates."); }
        });
      })
      .catch(function () {
        failures += 1;
        say("Updates paused: the service did not answer. Trying again.");
        schedule(Math.min(60, seconds * Math.pow(2, failures)));
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { clearTimeout(timer); } else if (!stopped) { tick(); }
  });
  schedule(seconds);
})();
