"""``stainfree view``: a local web server that shows any number of cells, page by page.

The page (:func:`page_html`) carries bokeh and its own script inline; the data come from a few
JSON routes over a :class:`~stainfree.view.source.CellsSource`:

- ``GET /api/summary``: size, columns, notes, galleries, confusion matrix;
- ``POST /api/page`` with ``{"query": {...}, "page": k}``: one page of cells with its sprite sheet;
- ``GET /api/cell?row=R``: one cell's row and thumbnail (hover);
- ``GET /api/points?colour=COLUMN``: the scatter's sample, coloured.

It listens on the loopback address only by default; nothing on the page comes from elsewhere.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from ..utils import StainfreeError
from .source import CellsSource, Query

logger = logging.getLogger(__name__)
#: The port ``stainfree view`` listens on unless told otherwise.
DEFAULT_PORT = 8765
#: A request body larger than this (bytes) is refused.
MAX_BODY = 64 * 2**20


def page_html(source: CellsSource) -> str:
    """The viewer's page: layout, bokeh (inline, when there is a scatter) and the page's script.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.view.server import page_html
    >>> from stainfree.view.source import CellsSource
    >>> html = page_html(CellsSource.from_cellset(make_cells(2, size=24)))
    >>> html.startswith("<!DOCTYPE html>"), "sf-grid" in html, "sf-scatter-box" in html
    (True, True, False)
    """
    from html import escape
    from importlib.resources import files

    from ..report.interactive import scatter_html

    scatter = ""
    if source.view.umap is not None:
        scatter = (
            '<section id="sf-scatter-box"><h2>Embedding (UMAP)</h2><p id="sf-scatter-note"></p>'
            '<div class="sf-row"><div><label>colour by <select id="sf-colour"></select></label>'
            f'{scatter_html([], [], [])}<div class="sf-legend" id="sf-legend"></div></div>'
            '<div class="sf-hover" id="sf-hover"><canvas class="sf-thumb" id="sf-hover-thumb" width="1" height="1"></canvas>'
            '<table id="sf-hover-row"></table></div></div></section>'
        )
    script = files("stainfree.view").joinpath("view.js").read_text()
    style = files("stainfree.view").joinpath("view.css").read_text()
    title = escape(str(source.path or "cells"))
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>stainfree view: {title}</title>'
        f"<style>{style}</style></head><body>"
        f'<h1>stainfree view</h1><p id="sf-summary">{title}</p><div id="sf-notes"></div>{scatter}'
        '<section id="sf-galleries"></section><section id="sf-confusion"></section>'
        '<section><h2 id="sf-grid-title">Cells</h2><div class="sf-controls">'
        '<label>keep <select id="sf-filter-column"><option value="">(all cells)</option></select></label> '
        '<label>= <select id="sf-filter-value"></select></label> '
        '<label>sort by <select id="sf-sort"><option value="">(table order)</option></select></label> '
        '<label><input type="checkbox" id="sf-descending" checked> largest first</label> '
        '<button id="sf-all">all cells</button></div>'
        '<div class="sf-pager"><button id="sf-prev">&larr;</button> <span id="sf-page"></span> <button id="sf-next">&rarr;</button></div>'
        '<div id="sf-composition"></div><div id="sf-grid"></div><table id="sf-detail"></table></section>'
        f"<script>{script}</script></body></html>"
    )


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer

    def log_message(self, format, *args):  # noqa: A002 - the signature http.server calls
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        source = self.server.source
        routes = {
            "/": lambda: self._send(200, self.server.page().encode(), "text/html; charset=utf-8"),
            "/api/summary": lambda: self._json(source.summary()),
            "/api/cell": lambda: self._json(source.cell(int(query.get("row", "-1")))),
            "/api/points": lambda: self._json(source.points(query.get("colour") or None)),
        }
        self._route(routes, url.path)

    def do_POST(self):  # noqa: N802
        def page():
            body = self._body()
            return self._json(self.server.source.page(Query.from_json(body.get("query") or {}), page=int(body.get("page", 0))))

        self._route({"/api/page": page}, urlparse(self.path).path)

    def _route(self, routes: dict, path: str) -> None:
        handler = routes.get(path)
        if handler is None:
            return self._json({"error": f"no such page: {path}"}, status=404)
        try:
            handler()
        except (StainfreeError, ValueError) as exc:
            self._json({"error": str(exc)}, status=400)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away (a newer hover replaced this request)
        except Exception as exc:  # one failed request must not stop the viewer; say what failed
            logger.exception("viewer request %s failed", path)
            self._json({"error": f"{exc.__class__.__name__}: {exc}"}, status=500)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise StainfreeError(f"request of {length} bytes is larger than {MAX_BODY}")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as exc:
            raise StainfreeError(f"request body is not JSON ({exc})") from exc
        if not isinstance(body, dict):
            raise StainfreeError("request body must be a JSON object")
        return body

    def _json(self, value, status: int = 200) -> None:
        self._send(status, json.dumps(value, separators=(",", ":"), allow_nan=False).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class ViewServer(ThreadingHTTPServer):
    """The viewer's HTTP server over one :class:`CellsSource` (threads: one per request).

    Parameters
    ----------
    source : CellsSource
        The cells to show.
    host : str, default "127.0.0.1"
        Address to listen on.
    port : int, default :data:`DEFAULT_PORT`
        Port to listen on (0: any free port; see :attr:`url`).

    Raises
    ------
    StainfreeError
        When the port is in use or the address cannot be bound.
    """

    daemon_threads = True

    def __init__(self, source: CellsSource, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT):
        self.source = source
        self._page = None
        self._lock = threading.Lock()
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StainfreeError(f"port {port} on {host} is already in use (another viewer?); choose another with --port") from exc
            raise StainfreeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc

    @property
    def url(self) -> str:
        """Where the viewer is, e.g. ``http://127.0.0.1:8765/``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def page(self) -> str:
        """The page, built once."""
        with self._lock:
            if self._page is None:
                self._page = page_html(self.source)
            return self._page

    def start(self) -> threading.Thread:
        """Serve from a background thread (for tests and notebooks); :meth:`shutdown` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="stainfree-view", daemon=True)
        thread.start()
        return thread


def serve(path, *, cells=None, host: str = "127.0.0.1", port: int = DEFAULT_PORT, browser: bool = True, on_ready=None) -> None:
    """Open ``path`` (a CellSet, a run folder or an ``.h5ad``) and serve the viewer until interrupted.

    Parameters
    ----------
    path : path
        What to show.
    cells : path, optional
        The CellSet the thumbnails come from, when ``path`` does not say (an ``.h5ad``) or says wrongly.
    host, port
        Where to listen (see :class:`ViewServer`).
    browser : bool, default True
        Open the page in the default web browser.
    on_ready : callable, optional
        Called with one line (what is served, and where) once the server listens.
    """
    source = CellsSource.open(path, cells=cells)
    server = ViewServer(source, host=host, port=port)
    line = f"stainfree view: {len(source.table):,} cells of {path} at {server.url} (Ctrl-C stops it)"
    (on_ready or logger.info)(line)
    if browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(server.url,)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
