/* stainfree report: the interactive views (stainfree.report.interactive). No request leaves the page. */
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("sf-data").textContent);
  const T = data.thumbs;
  const MAX_GALLERY = 200;
  const CATEGORICAL = data.palette.categorical, VIRIDIS = data.palette.numeric;
  const sheets = [];  // decoded on first use: the galleries need the first, a hover the one of its cell
  function sheet(k) {
    if (!sheets[k]) { sheets[k] = new Image(); sheets[k].src = T.sheets[k]; }
    return sheets[k];
  }
  const missing = new Set(T ? T.missing : []);
  const byName = {};
  data.columns.forEach(function (c) { byName[c.name] = c; });

  function value(column, i) {
    if (column.kind === "cat") { const k = column.codes[i]; return k < 0 ? "" : column.levels[k]; }
    const v = column.values[i]; return v === null ? "" : v;
  }

  function describe(i) {
    return [data.ids[i]].concat(data.columns.map(function (c) { return c.name + ": " + value(c, i); })).join("\n");
  }

  function drawThumb(i, canvas) {
    canvas.dataset.cell = String(i);
    canvas.title = describe(i);
    if (!T || missing.has(i)) { canvas.width = 1; canvas.height = 1; canvas.dataset.drawn = "none"; return canvas; }
    canvas.width = T.w; canvas.height = T.h;
    const per = T.tiles * T.tiles, k = i % per, image = sheet(Math.floor(i / per));
    const sx = (k % T.tiles) * T.w, sy = Math.floor(k / T.tiles) * T.h;
    const draw = function () {
      if (canvas.dataset.cell !== String(i)) return;  // the hover panel moved on to another cell meanwhile
      canvas.getContext("2d").drawImage(image, sx, sy, T.w, T.h, 0, 0, T.w, T.h);
      canvas.dataset.drawn = "yes";
    };
    if (image.complete && image.naturalWidth) draw(); else image.addEventListener("load", draw, { once: true });
    return canvas;
  }

  function thumb(i) {
    const canvas = document.createElement("canvas");
    canvas.className = "sf-thumb";
    return drawThumb(i, canvas);
  }

  function composition(cells) {
    return data.columns.filter(function (c) { return c.kind === "cat" && c.levels.length <= 30; }).map(function (c) {
      const counts = {};
      cells.forEach(function (i) { const v = value(c, i) || "(none)"; counts[v] = (counts[v] || 0) + 1; });
      const parts = Object.keys(counts).sort(function (a, b) { return counts[b] - counts[a]; }).map(function (v) {
        return v + " " + counts[v] + " (" + Math.round(100 * counts[v] / cells.length) + "%)";
      });
      return "<b>" + escape(c.name) + "</b>: " + escape(parts.join(", "));
    });
  }

  function escape(text) {
    return String(text).replace(/[&<>"]/g, function (ch) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[ch]; });
  }

  function showGallery(title, cells) {
    document.getElementById("sf-gallery-title").textContent = title;
    const box = document.getElementById("sf-gallery");
    box.innerHTML = "";
    const lines = document.createElement("div");
    lines.className = "sf-composition";
    lines.innerHTML = cells.length ? composition(cells).join("<br>") : "No cells.";
    box.appendChild(lines);
    if (cells.length > MAX_GALLERY) {
      const note = document.createElement("p");
      note.textContent = "The first " + MAX_GALLERY + " of " + cells.length + " cells are shown.";
      box.appendChild(note);
    }
    const strip = document.createElement("div");
    strip.className = "sf-strip sf-gallery-cells";
    cells.slice(0, MAX_GALLERY).forEach(function (i) { strip.appendChild(thumb(i)); });
    box.appendChild(strip);
  }

  function hover(indices) {
    if (!indices || !indices.length) return;
    const i = data.points[indices[0]];
    drawThumb(i, document.getElementById("sf-hover-thumb"));
    const rows = [["cell", data.ids[i]]].concat(data.columns.map(function (c) { return [c.name, value(c, i)]; }));
    document.getElementById("sf-hover-row").innerHTML = rows.map(function (r) {
      return "<tr><th>" + escape(r[0]) + "</th><td>" + escape(r[1]) + "</td></tr>";
    }).join("");
  }

  function select(indices) {
    const cells = indices.map(function (k) { return data.points[k]; });
    showGallery("Selection: " + cells.length + " cell" + (cells.length === 1 ? "" : "s") +
      (data.sampled ? " of the sample" : ""), cells);
  }

  function colours(name) {
    const c = byName[name];
    const legend = [];
    let colour;
    if (c.kind === "cat") {
      colour = function (i) { const k = c.codes[i]; return k < 0 ? "#cccccc" : CATEGORICAL[k % CATEGORICAL.length]; };
      c.levels.slice(0, 40).forEach(function (level, k) { legend.push("<span><i style=\"background:" + CATEGORICAL[k % CATEGORICAL.length] + "\"></i>" + escape(level) + "</span>"); });
    } else {
      const finite = c.values.filter(function (v) { return v !== null; });
      const lo = Math.min.apply(null, finite), hi = Math.max.apply(null, finite), span = hi > lo ? hi - lo : 1;
      colour = function (i) {
        const v = c.values[i];
        return v === null ? "#cccccc" : VIRIDIS[Math.min(VIRIDIS.length - 1, Math.floor((v - lo) / span * VIRIDIS.length))];
      };
      legend.push("<span><i style=\"background:" + VIRIDIS[0] + "\"></i>" + lo + "</span><span><i style=\"background:" + VIRIDIS[VIRIDIS.length - 1] + "\"></i>" + hi + "</span>");
    }
    return { colours: data.points.map(colour), legend: legend.join("") };
  }

  function source() {
    const docs = (window.Bokeh && window.Bokeh.documents) || [];
    for (let d = 0; d < docs.length; d++) {
      const model = docs[d].get_model_by_name("sf-points");
      if (model) return model;
    }
    return null;
  }

  function colourBy(name) {
    const src = source();
    if (!src || !byName[name]) return false;
    const result = colours(name);
    src.data = Object.assign({}, src.data, { color: result.colours });
    document.getElementById("sf-legend").innerHTML = result.legend;
    return true;
  }

  function start() {
    document.querySelectorAll("#sf-view .sf-strip[data-cells]").forEach(function (div) {
      if (div.dataset.cells) div.dataset.cells.split(",").forEach(function (i) { div.appendChild(thumb(Number(i))); });
    });
    document.querySelectorAll("#sf-view td.sf-open").forEach(function (td) {
      td.addEventListener("click", function () {
        const r = Number(td.dataset.row), c = Number(td.dataset.col), cf = data.confusion;
        const cells = cf.cells[r][c];
        showGallery("True " + cf.classes[r] + ", predicted " + cf.classes[c] + ": " + cf.counts[r][c] + " cells" +
          (cells.length < cf.counts[r][c] ? " (the " + cells.length + " most confident shown)" : ""), cells);
      });
    });
    const chooser = document.getElementById("sf-colour");
    if (chooser && data.colour) {
      chooser.value = data.colour;  // the page opens coloured by it (the colours come with the scatter)
      chooser.addEventListener("change", function () { colourBy(chooser.value); });
      document.getElementById("sf-legend").innerHTML = colours(data.colour).legend;
      let tries = 0;
      const wait = setInterval(function () {  // bokeh builds its document after the page has loaded
        if (source()) { window.sfView.readyAt = performance.now(); clearInterval(wait); } else if (++tries > 600) clearInterval(wait);
      }, 20);
    }
  }

  window.sfView = { hover: hover, select: select, showGallery: showGallery, colourBy: colourBy, source: source, data: data };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
