/* Progressive enhancement of the marketplace's pages; every page works without it.
 *
 * Search page: when a filter, the sort or the page size changes (or the typing in the
 * search box pauses), the page is fetched again from the server with the new query, its
 * filters and results are swapped in, and the address bar is updated with
 * history.replaceState, so the URL always carries the query. The server renders all data
 * (escaped); this script never writes data as HTML: it only moves server-rendered nodes
 * and sets textContent.
 * Detail page: copy buttons for checksums, the identifier and the fetch command.
 */
(function () {
  "use strict";
  document.documentElement.classList.replace("no-js", "js");

  var DEFAULTS = { status: "valid", sort: "-created", limit: "20", offset: "0" };
  var NARROW = "(max-width: 49.99rem)";
  var TYPING_PAUSE = 300;

  function searchUrl(form) {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, name) {
      if (typeof value === "string" && value !== "" && DEFAULTS[name] !== value) {
        params.append(name, value);
      }
    });
    /* as readable as the server's own links: these characters need no escape in a query */
    var query = params.toString().replace(/%40/g, "@").replace(/%3A/gi, ":")
      .replace(/%2F/gi, "/").replace(/%2C/gi, ",");
    return form.getAttribute("action") + (query ? "?" + query : "");
  }

  /* Where the keyboard focus was, so it can be put back on the same control after a swap. */
  function focusMark() {
    var active = document.activeElement;
    if (!active || !active.name || active.id === "q") { return null; }
    return { id: active.id, name: active.name, value: active.value };
  }

  function refocus(mark) {
    if (!mark) { return; }
    var target = document.getElementById(mark.id);
    if (!target || target.name !== mark.name || target.value !== mark.value) {
      target = Array.prototype.find.call(document.getElementsByName(mark.name), function (el) {
        return el.value === mark.value;
      });
    }
    if (target) { target.focus(); }
  }

  function swap(id, fresh) {
    var old = document.getElementById(id);
    var replacement = fresh.getElementById(id);
    if (!old || !replacement) { return false; }
    var panels = old.querySelectorAll("details");
    var freshPanels = replacement.querySelectorAll("details");
    /* keep open/closed panels as the person left them */
    if (panels.length && panels[0].classList.contains("filters__panel") && freshPanels.length) {
      freshPanels[0].open = panels[0].open;
    }
    old.replaceWith(document.adoptNode(replacement));
    return true;
  }

  function enhanceSearch(form) {
    var controller = null;
    var timer = null;
    var announcer = document.getElementById("announcer");
    var lastUrl = searchUrl(form);

    function update() {
      var url = searchUrl(form);
      if (url === lastUrl) { return; }
      lastUrl = url;
      if (controller) { controller.abort(); }
      controller = new AbortController();
      var results = document.getElementById("results");
      if (results) { results.setAttribute("aria-busy", "true"); }
      fetch(url, { headers: { Accept: "text/html" }, signal: controller.signal })
        .then(function (response) {
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.text();
        })
        .then(function (text) {
          var fresh = new DOMParser().parseFromString(text, "text/html");
          var mark = focusMark();
          if (!swap("facets", fresh) || !swap("results", fresh)) {
            throw new Error("unexpected page");
          }
          document.title = fresh.title;
          history.replaceState(null, "", url);
          refocus(mark);
          var summary = document.getElementById("live-summary");
          if (announcer && summary) { announcer.textContent = summary.dataset.summary; }
          document.dispatchEvent(new CustomEvent("marketplace:results", { detail: url }));
        })
        .catch(function (error) {
          if (error.name === "AbortError") { return; }
          window.location.assign(url); /* let the server show its page (or error page) */
        });
    }

    form.addEventListener("change", function (event) {
      if (event.target.id === "q") { return; }
      window.clearTimeout(timer);
      update();
    });
    form.addEventListener("input", function (event) {
      if (event.target.id !== "q") { return; }
      window.clearTimeout(timer);
      timer = window.setTimeout(update, TYPING_PAUSE);
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      window.clearTimeout(timer);
      lastUrl = null;
      update();
    });
  }

  function copyText(button) {
    var source = document.getElementById(button.dataset.copy);
    if (!source) { return; }
    var text = source.textContent.trim();
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      button.classList.add("is-copied");
      window.setTimeout(function () {
        button.textContent = label;
        button.classList.remove("is-copied");
      }, 1600);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);
    }
  }

  /* Without the clipboard API: select the text so that Ctrl+C copies it. */
  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("search");
    if (form && window.fetch && window.DOMParser && window.history.replaceState) {
      var panel = form.querySelector(".filters__panel");
      if (panel && window.matchMedia(NARROW).matches) { panel.open = false; }
      enhanceSearch(form);
    }
    document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { copyText(button); });
    });
    var verdict = document.getElementById("verdict");
    if (verdict) { verdict.focus(); }
  });
}());
