/* stainfree view: the page's script. Data come from this viewer's own server (/api/...). */
(function () {
  "use strict";
  const state = { summary: null, query: {}, page: 0, points: null, hoverCache: new Map(), hoverAt: 0, pages: 0 };

  function $(id) { return document.getElementById(id); }
  function escape(text) {
    return String(text).replace(/[&<>"]/g, function (ch) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[ch]; });
  }
  function api(path, body) {
    const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    return fetch(path, init).then(function (r) {
      return r.json().then(function (v) { if (!r.ok) throw new Error(v.error || r.statusText); return v; });
    });
  }
  function fail(error) {
    const p = document.createElement("p");
    p.className = "sf-error";
    p.textContent = String(error.message || error);
    $("sf-notes").appendChild(p);
  }

  function rowTable(cell) {
    return Object.keys(cell).filter(function (k) { return k !== "row"; }).map(function (k) {
      return "<tr><th>" + escape(k) + "</th><td>" + escape(cell[k] === null ? "" : cell[k]) + "</td></tr>";
    }).join("");
  }

  function drawTile(canvas, image, thumbs, k) {
    canvas.width = thumbs.w; canvas.height = thumbs.h;
    const sx = (k % thumbs.tiles) * thumbs.w, sy = Math.floor(k / thumbs.tiles) * thumbs.h;
    const draw = function () { canvas.getContext("2d").drawImage(image, sx, sy, thumbs.w, thumbs.h, 0, 0, thumbs.w, thumbs.h); canvas.dataset.drawn = "yes"; };
    if (image.complete && image.naturalWidth) draw(); else image.addEventListener("load", draw, { once: true });
  }

  // ------------------------------------------------------------------ the grid of cells
  function showPage(result) {
    state.pages = result.pages;
    $("sf-page").textContent = result.total ? "page " + (result.page + 1) + " of " + result.pages + " (" + result.total.toLocaleString() + " cells)" : "no cells";
    $("sf-composition").innerHTML = result.composition.map(function (c) {
      return "<b>" + escape(c.name) + "</b>: " + escape(c.counts.map(function (v) { return v[0] + " " + v[1].toLocaleString(); }).join(", "));
    }).join("<br>");
    const grid = $("sf-grid");
    grid.innerHTML = "";
    const image = new Image();
    if (result.thumbs) image.src = result.thumbs.sheet;
    const missing = new Set(result.thumbs ? result.thumbs.missing : []);
    result.cells.forEach(function (cell, k) {
      const canvas = document.createElement("canvas");
      canvas.className = "sf-thumb";
      canvas.dataset.row = String(cell.row);
      canvas.title = cell.cell_id + (cell.label ? " (" + cell.label + ")" : "");
      if (result.thumbs && !missing.has(k)) drawTile(canvas, image, result.thumbs, k); else { canvas.width = 1; canvas.height = 1; }
      canvas.addEventListener("click", function () { $("sf-detail").innerHTML = rowTable(cell); });
      grid.appendChild(canvas);
    });
    grid.dataset.loaded = String(performance.now());
  }

  function load(title, query, page) {
    if (title) { $("sf-grid-title").textContent = title; state.query = query; }
    state.page = page || 0;
    return api("/api/page", { query: state.query, page: state.page }).then(showPage).catch(fail);
  }

  function filtered() {
    const column = $("sf-filter-column").value, query = {};
    if (column) { query.filters = {}; query.filters[column] = $("sf-filter-value").value; }
    if ($("sf-sort").value) { query.sort = $("sf-sort").value; query.descending = $("sf-descending").checked; }
    return load(column ? column + " = " + $("sf-filter-value").value : "Cells", query, 0);
  }

  function controls(summary) {
    const byName = {};
    summary.columns.forEach(function (c) {
      byName[c.name] = c;
      if (c.name === "cell_id") return;
      if (c.kind === "cat") $("sf-filter-column").add(new Option(c.name, c.name));
      $("sf-sort").add(new Option(c.name, c.name));
    });
    $("sf-filter-column").addEventListener("change", function () {
      const c = byName[$("sf-filter-column").value], values = $("sf-filter-value");
      values.innerHTML = "";
      if (c) c.levels.forEach(function (v) { values.add(new Option(v, v)); });
      filtered();
    });
    ["sf-filter-value", "sf-sort", "sf-descending"].forEach(function (id) { $(id).addEventListener("change", filtered); });
    $("sf-all").addEventListener("click", function () { $("sf-filter-column").value = ""; $("sf-filter-value").innerHTML = ""; $("sf-sort").value = ""; load("Cells", {}, 0); });
    $("sf-prev").addEventListener("click", function () { if (state.page > 0) load(null, null, state.page - 1); });
    $("sf-next").addEventListener("click", function () { if (state.page + 1 < state.pages) load(null, null, state.page + 1); });
  }

  function galleries(summary) {
    const box = $("sf-galleries");
    summary.galleries.forEach(function (g) {
      const h = document.createElement("h2"); h.textContent = g.title; box.appendChild(h);
      Object.keys(g.groups).forEach(function (name) {
        const b = document.createElement("button");
        b.className = "sf-group";
        b.textContent = name + " (" + g.groups[name].length + ")";
        b.addEventListener("click", function () { load(g.title + ": " + name, { rows: g.groups[name] }, 0); });
        box.appendChild(b);
      });
    });
  }

  function confusion(summary) {
    const cf = summary.confusion;
    if (!cf) return;
    const head = "<tr><th>true \\ predicted</th>" + cf.classes.map(function (c) { return "<th>" + escape(c) + "</th>"; }).join("") + "</tr>";
    const body = cf.classes.map(function (a, i) {
      return "<tr><th>" + escape(a) + "</th>" + cf.counts[i].map(function (n, j) {
        return n ? "<td class=\"sf-open\" data-row=\"" + i + "\" data-col=\"" + j + "\">" + n + "</td>" : "<td>0</td>";
      }).join("") + "</tr>";
    }).join("");
    $("sf-confusion").innerHTML = "<h2>Confusion matrix (click a count to see its cells)</h2><table class=\"sf-confusion\">" + head + body + "</table>";
    $("sf-confusion").querySelectorAll("td.sf-open").forEach(function (td) {
      td.addEventListener("click", function () {
        const a = cf.classes[Number(td.dataset.row)], b = cf.classes[Number(td.dataset.col)];
        load("True " + a + ", predicted " + b, { filters: { label: a, predicted: b }, sort: "score", descending: true }, 0);
      });
    });
  }

  // ------------------------------------------------------------------ the scatter
  function source() {
    const docs = (window.Bokeh && window.Bokeh.documents) || [];
    for (let d = 0; d < docs.length; d++) { const m = docs[d].get_model_by_name("sf-points"); if (m) return m; }
    return null;
  }

  function colourBy(name) {
    return api("/api/points?colour=" + encodeURIComponent(name || "")).then(function (p) {
      state.points = p;
      const whenReady = function (tries) {
        const src = source();
        if (!src) { if (tries < 500) setTimeout(function () { whenReady(tries + 1); }, 20); return; }
        src.data = { x: p.x, y: p.y, color: p.colour };
        $("sf-legend").innerHTML = p.legend.map(function (l) { return "<span><i style=\"background:" + l[1] + "\"></i>" + escape(l[0]) + "</span>"; }).join("");
        window.sfView.readyAt = performance.now();
      };
      whenReady(0);
      const n = state.summary.cells;
      $("sf-scatter-note").textContent = p.rows.length < n ? "A stratified sample of " + p.rows.length.toLocaleString() + " of the " + n.toLocaleString() + " cells is drawn." : "";
    }).catch(fail);
  }

  function hover(indices) {
    if (!indices || !indices.length || !state.points) return;
    const row = state.points.rows[indices[0]], asked = ++state.hoverAt;
    const show = function (c) {
      if (asked !== state.hoverAt) return;  // a later hover won
      $("sf-hover-row").innerHTML = rowTable(c.cell);
      const canvas = $("sf-hover-thumb");
      canvas.dataset.row = String(row); canvas.dataset.drawn = "";
      if (c.thumbs && !c.thumbs.missing.length) { const image = new Image(); image.src = c.thumbs.sheet; drawTile(canvas, image, c.thumbs, 0); }
    };
    if (state.hoverCache.has(row)) return show(state.hoverCache.get(row));
    api("/api/cell?row=" + row).then(function (c) { state.hoverCache.set(row, c); show(c); }).catch(fail);
  }

  function select(indices) {
    if (!state.points || !indices.length) return;
    const rows = indices.map(function (k) { return state.points.rows[k]; });
    load("Selection: " + rows.length.toLocaleString() + " cell" + (rows.length === 1 ? "" : "s"), { rows: rows }, 0);
  }

  function start() {
    api("/api/summary").then(function (summary) {
      state.summary = summary;
      $("sf-summary").textContent = summary.path + ": " + summary.cells.toLocaleString() + " cells" + (summary.channels.length ? "; thumbnails of " + summary.channels.join(", ") + ", each channel scaled to its own range" : "");
      summary.notes.forEach(function (n) { const p = document.createElement("p"); p.className = "sf-note"; p.textContent = n; $("sf-notes").appendChild(p); });
      controls(summary);
      galleries(summary);
      confusion(summary);
      const first = load("Cells", {}, 0);
      const chooser = $("sf-colour");
      if (chooser) {
        const offered = summary.columns.filter(function (c) { return c.name !== "cell_id" && (c.kind === "num" || !c.more); });
        offered.forEach(function (c) { chooser.add(new Option(c.name, c.name)); });
        const names = offered.map(function (c) { return c.name; });
        chooser.value = ["cluster", "leiden", "label", "predicted"].find(function (n) { return names.indexOf(n) >= 0; }) || names[0] || "";
        chooser.addEventListener("change", function () { colourBy(chooser.value); });
        first.then(function () { colourBy(chooser.value); });
      }
    }).catch(fail);
  }

  window.sfView = { hover: hover, select: select, load: load, state: state, source: source };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
