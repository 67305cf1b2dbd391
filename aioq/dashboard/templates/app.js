// Live updates by short polling of the JSON API (no library, no build step).
(function () {
  "use strict";
  var body = document.body, base = body.dataset.base, poll = +body.dataset.poll || 2000;
  var live = document.getElementById("live");
  function mark(ok) { live.className = "live " + (ok ? "ok" : "bad"); }
  function age(s) {
    if (s === null || s === undefined) return "-";
    if (s < 60) return s.toFixed(1) + "s";
    if (s < 3600) return (s / 60).toFixed(1) + "m";
    return (s / 3600).toFixed(1) + "h";
  }
  function rate(v) { return v >= 100 ? v.toFixed(0) + "/s" : v.toFixed(1) + "/s"; }
  var SVG = "http://www.w3.org/2000/svg";
  function draw(svg, values, width, height, max) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (!values.length) return;
    var top = max || Math.max.apply(null, values.concat([1e-9]));
    var step = values.length > 1 ? width / (values.length - 1) : width, pts = [];
    for (var i = 0; i < values.length; i++) {
      var x = values.length > 1 ? i * step : width, y = height - 2 - (values[i] / top) * (height - 4);
      pts.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    var area = document.createElementNS(SVG, "path");
    area.setAttribute("class", "area");
    area.setAttribute("d", "M0," + height + " L" + pts.join(" L") + " L" + width + "," + height + " Z");
    var line = document.createElementNS(SVG, "path");
    line.setAttribute("class", "line");
    line.setAttribute("d", "M" + pts.join(" L"));
    svg.appendChild(area); svg.appendChild(line);
  }
  function busy() {
    var a = document.activeElement;
    return (a && a.tagName === "INPUT") || String(window.getSelection()).length > 0;
  }
  function refreshMain() {  // re-render the page's main part from the server's HTML
    if (busy()) return Promise.resolve();
    return fetch(location.href, {headers: {"Accept": "text/html"}}).then(function (r) {
      return r.text().then(function (html) {
        // without its style and scripts: their nonce is not this page's (CSP)
        html = html.replace(/<(style|script)\b[\s\S]*?<\/\1>/g, "");
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (fresh) document.getElementById("main").innerHTML = fresh.innerHTML;
        mark(r.ok);
      });
    });
  }
  function same(attr, names) {
    var rows = document.querySelectorAll("tr[" + attr + "]"), have = [];
    for (var i = 0; i < rows.length; i++) have.push(rows[i].getAttribute(attr));
    return have.join("\n") === names.join("\n");
  }
  function setCells(row, values) {
    var cells = row.querySelectorAll("[data-k]");
    for (var i = 0; i < cells.length; i++) {
      var k = cells[i].dataset.k, v = values[k];
      if (k === "oldest_ready_age_s") v = age(v);
      else if (k === "last_seen_s") v = age(v) + " ago";
      else if (k === "running" && values.concurrency !== undefined) v = v + "/" + values.concurrency;
      if (v !== undefined && cells[i].textContent !== String(v)) cells[i].textContent = v;
    }
  }
  function showStatus(st) {
    var names = st.queues.map(function (q) { return q.name; });
    var ids = st.workers.map(function (w) { return w.id; });
    if (!same("data-queue", names) || !same("data-worker", ids)) {
      return refreshMain().then(function () { chart(st); });
    }
    st.queues.forEach(function (q) {
      setCells(document.querySelector('tr[data-queue="' + CSS.escape(q.name) + '"]'), q);
    });
    st.workers.forEach(function (w) {
      setCells(document.querySelector('tr[data-worker="' + CSS.escape(w.id) + '"]'), w);
    });
    chart(st);
  }
  function chart(st) {
    var tp = st.throughput, el = document.getElementById("chart");
    if (!el) return;
    draw(el, tp.total, 600, 120);
    var max = Math.max.apply(null, tp.total.concat([0]));
    document.getElementById("chart-max").textContent = "peak " + rate(max);
    document.getElementById("chart-now").textContent = tp.total.length ? "now " + rate(tp.total[tp.total.length - 1]) : "";
    document.getElementById("chart-from").textContent = tp.t.length ? new Date(tp.t[0] * 1000).toLocaleTimeString() : "collecting…";
    Object.keys(tp.queues).forEach(function (name) {
      var svg = document.querySelector('svg[data-spark="' + CSS.escape(name) + '"]');
      var label = document.querySelector('span[data-rate="' + CSS.escape(name) + '"]');
      var values = tp.queues[name];
      if (svg) draw(svg, values, 160, 28);
      if (label) label.textContent = values.length ? rate(values[values.length - 1]) : "";
    });
  }
  function getJSON(path) {
    return fetch(base + path, {headers: {"Accept": "application/json"}}).then(function (r) {
      mark(r.ok || r.status === 404);
      return r.json();
    });
  }
  var page = body.dataset.page, tick;
  if (page === "overview") {
    var initial = document.getElementById("initial");
    if (initial) chart(JSON.parse(initial.textContent));
    tick = function () { return getJSON("/api/status").then(showStatus); };
  } else if (page === "job") {
    var sec = document.querySelector("[data-job]");
    tick = function () {
      if (!sec || sec.dataset.final === "yes") return Promise.resolve();
      return getJSON("/api/jobs/" + encodeURIComponent(sec.dataset.job)).then(function (d) {
        var p = d.info.progress, bar = document.getElementById("progress");
        if (d.info.state !== sec.dataset.state || (p && !bar)) return refreshMain().then(function () {
          sec = document.querySelector("[data-job]");
        });
        if (p && bar) {
          bar.value = p.current; if (p.total !== null) bar.max = p.total;
          document.getElementById("progress-text").textContent = p.current + (p.total !== null ? " / " + p.total : "");
        }
      });
    };
  } else if (page === "refresh") {
    tick = refreshMain;
  }
  if (tick) {
    var loop = function () {
      Promise.resolve().then(tick).catch(function () { mark(false); }).then(function () {
        setTimeout(loop, poll);
      });
    };
    setTimeout(loop, page === "overview" ? 0 : poll);
  }
})();
