/* featviz search: the run page's unit search and the all-runs page's run filter.
 *
 * Plain script, no library, no network: the units come from units-index.js (window.FEATVIZ_UNITS,
 * written by featviz/report/search_index.py, whose docstring lists the row keys), loaded with a
 * <script> element, which file:// allows where fetch()/XHR are blocked. The all-runs page inlines this
 * file and loads each run's units-index.js the same way, one after the other.
 *
 * Query: words separated by spaces, every word must match. A word matches a unit when it is part of
 * its layer name or class label; a number (or #number) is the unit number (or part of the label);
 * layer#unit (or layer:unit, layer/unit) names one unit. The filters (layer, flags, minimum score)
 * live in the URL hash: index.html#q=conv2&flags=d&score=objective&min=1.5
 */
(function () {
  "use strict";
  var FLAGS = {d: "dead", w: "weak", r: "near-duplicate", u: "not converged", n: "non-finite", p: "unnatural path"};
  var FLAG_CLASS = {d: "dead", w: "weak", r: "redundant", u: "unconverged", n: "nonfinite", p: "unnatural"};
  var SCORES = [["objective", "o"], ["dataset_max", "m"], ["frac_active", "a"], ["max_corr", "c"],
                ["target_softmax", "s"], ["transfer_softmax", "x"], ["trust_score", "v"]];
  var SHOWN = 200;

  function words(q) { return String(q || "").toLowerCase().split(/[\s,]+/).filter(Boolean); }

  function wordMatches(row, w) {
    var l = String(row.l).toLowerCase(), n = row.n == null ? "" : String(row.n).toLowerCase();
    var m = /^(.+?)[#:/](\d+)$/.exec(w);
    if (m && l.indexOf(m[1]) >= 0 && row.u === +m[2]) return true;
    var d = /^#?(\d+)$/.exec(w);
    if (d) return row.u === +d[1] || n.indexOf(d[1]) >= 0;
    return l.indexOf(w) >= 0 || n.indexOf(w) >= 0;
  }

  function textMatches(row, ws) {
    for (var i = 0; i < ws.length; i++) if (!wordMatches(row, ws[i])) return false;
    return true;
  }

  function score(row, key) {
    for (var i = 0; i < SCORES.length; i++) {
      if (SCORES[i][0] === key) { var v = row[SCORES[i][1]]; return typeof v === "number" ? v : null; }
    }
    return null;
  }

  /* opts: {q, layer, flags: ["d", "ok", ...], score, min, order}; returns the matching rows */
  function filter(rows, opts) {
    var ws = words(opts.q), flags = opts.flags || [], lim = opts.min;
    var useMin = lim !== null && lim !== undefined && lim !== "" && !isNaN(+lim);
    var out = rows.filter(function (r) {
      if (opts.layer && r.l !== opts.layer) return false;
      if (flags.length) {
        var f = r.f || "", any = false;
        for (var i = 0; i < flags.length; i++) {
          if (flags[i] === "ok" ? f === "" : f.indexOf(flags[i]) >= 0) { any = true; break; }
        }
        if (!any) return false;
      }
      if (useMin) { var v = score(r, opts.score); if (v === null || v < +lim) return false; }
      return textMatches(r, ws);
    });
    if (opts.order === "asc" || opts.order === "desc") {
      var sign = opts.order === "desc" ? -1 : 1;
      out = out.map(function (r, i) { return [r, i, score(r, opts.score)]; });
      out.sort(function (a, b) {
        if (a[2] === null || b[2] === null) return (a[2] === null) - (b[2] === null) || a[1] - b[1];
        return sign * (a[2] - b[2]) || a[1] - b[1];
      });
      out = out.map(function (x) { return x[0]; });
    }
    return out;
  }

  function readHash() {
    var h = String(location.hash || "").replace(/^#/, ""), o = {};
    if (h.indexOf("=") < 0) return o;
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i < 0) return;
      try { o[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1).replace(/\+/g, " ")); }
      catch (e) { /* a malformed escape: ignore that pair */ }
    });
    return o;
  }

  function hashOf(o) {
    var parts = [];
    Object.keys(o).forEach(function (k) {
      if (o[k] !== "" && o[k] !== null && o[k] !== undefined) parts.push(k + "=" + encodeURIComponent(o[k]));
    });
    return parts.join("&");
  }

  function setHash(h) {
    var url = location.href.split("#")[0] + (h ? "#" + h : "");
    try { history.replaceState(null, "", url); } catch (e) { /* some file:// setups refuse it: keep the old hash */ }
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3); }

  /* ------------------------------------------------------------------ run page */
  /* the index is loaded once the page has loaded (so a large one never delays the page), or at once
     when the address carries a query or a search control is touched */
  function runPage() {
    var bar = document.getElementById("search-bar"), count = document.getElementById("q-count");
    var state = "idle";
    function load() {
      if (state !== "idle") return;
      state = "loading";
      if (Array.isArray(window.FEATVIZ_UNITS)) { state = "done"; runSearch(window.FEATVIZ_UNITS); return; }
      count.textContent = "loading the search index…";
      var s = el("script", {src: bar.getAttribute("data-index")});
      s.onload = function () {
        state = "done";
        if (Array.isArray(window.FEATVIZ_UNITS)) runSearch(window.FEATVIZ_UNITS);
        else count.textContent = "the search index (units-index.js) holds no units";
      };
      s.onerror = function () { state = "done"; count.textContent = "no search index (units-index.js) in this report"; };
      document.head.appendChild(s);
    }
    count.textContent = "type a layer, a unit number or a class, or pick a filter";
    bar.addEventListener("focusin", load);
    if (Object.keys(readHash()).length) load();
    else if (document.readyState === "complete") setTimeout(load, 0);
    else window.addEventListener("load", function () { setTimeout(load, 0); });
  }

  function runSearch(rows) {
    var box = document.getElementById("q"), results = document.getElementById("q-results");
    var count = document.getElementById("q-count");
    var layerSel = document.getElementById("q-layer"), scoreSel = document.getElementById("q-score");
    var minBox = document.getElementById("q-min"), orderSel = document.getElementById("q-order");
    var flagBoxes = Array.prototype.slice.call(document.querySelectorAll("input.q-flag"));
    var seen = {};
    rows.forEach(function (r) {
      if (!seen[r.l]) { seen[r.l] = 1; layerSel.appendChild(el("option", {value: r.l}, r.l)); }
    });
    SCORES.forEach(function (s) {
      if (rows.some(function (r) { return typeof r[s[1]] === "number"; })) scoreSel.appendChild(el("option", {value: s[0]}, s[0]));
    });

    function opts() {
      return {q: box.value, layer: layerSel.value, score: scoreSel.value, min: minBox.value, order: orderSel.value,
              flags: flagBoxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; })};
    }
    function active(o) { return words(o.q).length || o.layer || o.flags.length || (o.min !== "" && !isNaN(+o.min)); }

    function apply(writeHash) {
      var o = opts();
      if (writeHash) {
        setHash(hashOf({q: o.q.trim(), layer: o.layer, flags: o.flags.join(","), score: o.min !== "" ? o.score : "",
                        min: o.min, order: o.order}));
      }
      while (results.firstChild) results.removeChild(results.firstChild);
      if (!active(o)) {
        count.textContent = rows.length + " units indexed: type a layer, a unit number or a class, or pick a filter";
        return;
      }
      var hits = filter(rows, o);
      hits.slice(0, SHOWN).forEach(function (r) {
        var flags = (r.f || "").split("");
        var a = el("a", {"class": "cell" + flags.map(function (f) { return " " + (FLAG_CLASS[f] || ""); }).join(""),
                         href: r.p, "data-layer": r.l, "data-unit": String(r.u), "data-flags": r.f || ""});
        a.appendChild(el("img", {src: r.t, alt: r.l + " unit " + r.u, width: "112", height: "112", loading: "lazy"}));
        a.appendChild(el("b", {}, r.n != null ? r.n : "#" + r.u));
        a.appendChild(document.createTextNode(" " + r.l));
        var v = score(r, o.score || "objective");
        var tags = flags.map(function (f) { return FLAGS[f] || f; }).join(", ");
        a.appendChild(el("span", {"class": "val"}, (v !== null ? (o.score || "objective") + " " + fmt(v) : "") + (tags ? " · " + tags : "")));
        results.appendChild(a);
      });
      count.textContent = hits.length + " of " + rows.length + " units match" +
        (hits.length > SHOWN ? " (the first " + SHOWN + " shown)" : "");
    }

    function fromHash() {
      var h = readHash();
      if (!Object.keys(h).length) return false;
      box.value = h.q || "";
      if (h.layer !== undefined && seen[h.layer]) layerSel.value = h.layer;
      var fl = (h.flags || "").split(",");
      flagBoxes.forEach(function (b) { b.checked = fl.indexOf(b.value) >= 0; });
      if (h.score && Array.prototype.some.call(scoreSel.options, function (op) { return op.value === h.score; })) scoreSel.value = h.score;
      minBox.value = h.min !== undefined && !isNaN(+h.min) ? h.min : "";
      if (h.order === "asc" || h.order === "desc") orderSel.value = h.order;
      return true;
    }

    [box, minBox].forEach(function (e) { e.addEventListener("input", function () { apply(true); }); });
    [layerSel, scoreSel, orderSel].concat(flagBoxes).forEach(function (e) { e.addEventListener("change", function () { apply(true); }); });
    document.getElementById("q-clear").addEventListener("click", function () {
      box.value = ""; layerSel.value = ""; minBox.value = ""; orderSel.value = "";
      flagBoxes.forEach(function (b) { b.checked = false; });
      apply(true);
    });
    window.addEventListener("hashchange", function () { if (fromHash()) apply(false); });
    var linked = fromHash();
    apply(false);
    if (linked) document.getElementById("search").scrollIntoView();
    window.FeatvizSearch.ready = true;
  }

  /* ------------------------------------------------------------------ all-runs page */
  function runsPage() {
    var box = document.getElementById("runs-q"), count = document.getElementById("runs-count");
    var trs = Array.prototype.slice.call(document.querySelectorAll("#runs tr[data-run]"));
    var state = "idle", queue = [];

    function load() {  // each run's units-index.js in turn: every one sets window.FEATVIZ_UNITS
      state = "loading";
      queue = trs.filter(function (tr) { return tr.getAttribute("data-index"); });
      (function next() {
        var tr = queue.shift();
        if (!tr) { state = "done"; apply(); return; }
        window.FEATVIZ_UNITS = undefined;
        var s = el("script", {src: tr.getAttribute("data-index")});
        s.onload = function () { tr._units = Array.isArray(window.FEATVIZ_UNITS) ? window.FEATVIZ_UNITS : []; s.remove(); next(); };
        s.onerror = function () { tr._units = []; s.remove(); next(); };
        document.head.appendChild(s);
      })();
    }

    function apply() {
      var q = box.value.trim(), ws = words(q), shown = 0, units = 0;
      if (ws.length && state === "idle") load();
      setHash(q ? hashOf({q: q}) : "");
      trs.forEach(function (tr) {
        var link = tr.querySelector("a.run-search"), n = tr.querySelector(".run-hits");
        var base = link.getAttribute("data-href");
        link.setAttribute("href", base + (q ? "#" + hashOf({q: q}) : "#search"));
        if (!ws.length) { tr.hidden = false; n.textContent = ""; shown++; return; }
        var meta = (tr.getAttribute("data-text") || "").toLowerCase();
        var metaOk = ws.every(function (w) { return meta.indexOf(w) >= 0; });
        var hits = tr._units ? tr._units.filter(function (r) { return textMatches(r, ws); }).length : null;
        n.textContent = hits === null ? (tr.getAttribute("data-index") ? "…" : "no index") : hits + " unit" + (hits === 1 ? "" : "s");
        tr.hidden = !(metaOk || hits > 0 || (hits === null && state !== "done"));
        if (!tr.hidden) shown++;
        units += hits || 0;
      });
      count.textContent = !ws.length ? "" : (state === "done" ? shown + " of " + trs.length + " runs match, " + units + " units"
                                                              : "loading the runs' unit indexes…");
    }

    box.addEventListener("input", apply);
    var h = readHash();
    if (h.q) box.value = h.q;
    apply();
  }

  window.FeatvizSearch = {filter: filter, words: words, textMatches: textMatches, readHash: readHash};
  function start() {
    if (document.getElementById("q-results")) runPage();
    if (document.getElementById("runs-q")) runsPage();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
