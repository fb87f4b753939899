// Long tables of the report, from file:// with no network: <table class="sortable" data-page="N">
// sorts by a click on a header with data-sort="num" or "text" (a cell's value: its data-v, else its
// text; empty values last), shows N rows a page (a pager: <span data-pager="<table id>">), and
// hides rows marked data-optional unless a checkbox <input data-show-all="<table id>"> is ticked.
// Buttons <button data-details="open|close" data-target="<id>"> open or close every <details>
// inside that element (the run page's layer groups).
(function () {
  "use strict";

  function value(row, col, numeric) {
    var cell = row.cells[col];
    if (!cell) return null;
    var v = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    if (numeric) {
      var x = parseFloat(v);
      return isFinite(x) ? x : null;
    }
    return v === "" ? null : v.toLowerCase();
  }

  function setup(table) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r, i) { r._order = i; });
    var size = parseInt(table.getAttribute("data-page"), 10) || 0;
    var page = 0, all = false;
    var toggle = document.querySelector('input[data-show-all="' + table.id + '"]');
    var pager = document.querySelector('[data-pager="' + table.id + '"]');
    var prev, next, label;
    if (pager) {
      prev = document.createElement("button");
      prev.type = "button";
      prev.textContent = "← previous";
      next = document.createElement("button");
      next.type = "button";
      next.textContent = "next →";
      label = document.createElement("span");
      label.className = "muted";
      pager.appendChild(prev);
      pager.appendChild(document.createTextNode(" "));
      pager.appendChild(label);
      pager.appendChild(document.createTextNode(" "));
      pager.appendChild(next);
      prev.addEventListener("click", function () { if (page > 0) { page--; render(); } });
      next.addEventListener("click", function () { page++; render(); });
    }

    function render() {
      var shown = rows.filter(function (r) { return all || !r.hasAttribute("data-optional"); });
      var pages = size ? Math.max(1, Math.ceil(shown.length / size)) : 1;
      page = Math.min(page, pages - 1);
      rows.forEach(function (r) { r.hidden = true; });
      shown.forEach(function (r, i) { r.hidden = size > 0 && (i < page * size || i >= (page + 1) * size); });
      if (pager) {
        pager.hidden = pages <= 1;
        label.textContent = "page " + (page + 1) + " of " + pages + " (" + shown.length + " rows)";
        prev.disabled = page === 0;
        next.disabled = page >= pages - 1;
      }
    }

    Array.prototype.forEach.call(table.tHead ? table.tHead.rows[0].cells : [], function (th, col) {
      var kind = th.getAttribute("data-sort");
      if (!kind) return;
      th.classList.add("sort");
      th.title = "sort by " + th.textContent.trim();
      th.addEventListener("click", function () {
        var desc = th.getAttribute("aria-sort") === "ascending";
        Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", desc ? "descending" : "ascending");
        var numeric = kind === "num";
        rows.sort(function (a, b) {
          var x = value(a, col, numeric), y = value(b, col, numeric);
          if (x === null && y === null) return a._order - b._order;
          if (x === null) return 1;
          if (y === null) return -1;
          var c = x < y ? -1 : x > y ? 1 : 0;
          return (desc ? -c : c) || (a._order - b._order);
        });
        rows.forEach(function (r) { body.appendChild(r); });
        page = 0;
        render();
      });
    });
    if (toggle) {
      toggle.addEventListener("change", function () { all = toggle.checked; page = 0; render(); });
      all = toggle.checked;
    }
    render();
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), setup);
  Array.prototype.forEach.call(document.querySelectorAll("button[data-details]"), function (b) {
    b.addEventListener("click", function () {
      var open = b.getAttribute("data-details") === "open";
      var root = document.getElementById(b.getAttribute("data-target"));
      Array.prototype.forEach.call(root ? root.querySelectorAll("details") : [], function (d) { d.open = open; });
    });
  });
})();
