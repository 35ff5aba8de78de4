"""Putting the image routes and the HTTP API on the Panel server that runs the app, and recording the owner.

``panel serve apps/browse.py`` takes no routes from a script, only from ``--plugins``. So the app registers
what it needs itself: the first session of an application finds the Tornado application serving it (Bokeh keeps
no reference from a session to it, hence one scan of live objects per application), adds the routes there
(ahead of Panel's own, so the same paths behave the same with or without ``--plugins``) and writes the owner
record with the server's address and a fresh token. ``launch_app`` starts a server in this process and does the
same without the scan. Routes added this way go through the server's auth provider like every page, so
``--basic-auth`` and ``--oauth-*`` cover them.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
import threading
import weakref
from typing import Any

from ..config import get_settings
from . import fair_start
from . import owner as owner_record

__all__ = ["mount_current", "mount", "mount_for", "launch_app", "AppServer", "routes", "token"]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_mounted: weakref.WeakSet[Any] = weakref.WeakSet()  # Tornado applications that have our routes
_seen_contexts: weakref.WeakSet[Any] = weakref.WeakSet()  # Bokeh application contexts already looked up
_searched: weakref.WeakSet[Any] = weakref.WeakSet()  # Tornado applications already looked for among the servers
_token: list[str] = []


def token() -> str:
    """This process's API token (one for every server it runs), created on first use."""
    from .api import set_token

    with _lock:
        if not _token:
            _token.append(owner_record.new_token())
            set_token(_token[0])
        return _token[0]


def routes(prefix: str = "") -> list[tuple[str, Any, dict]]:
    """The image routes, the API and the plugins' routes (``routes`` hook), under the server's ``--prefix``."""
    from ..plugins import plugin_routes
    from ..ui.routes import ROUTES as IMAGE_ROUTES
    from .api import ROUTES as API_ROUTES

    prefix = prefix.rstrip("/")
    every = [*IMAGE_ROUTES, *API_ROUTES, *plugin_routes()]
    return [(prefix + pattern, handler, kwargs) for pattern, handler, kwargs in every]


def _local_url(address: str | None, port: int, prefix: str) -> str:
    host = address or "127.0.0.1"
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{prefix.rstrip('/')}"


def mount(tornado_app: Any, address: str | None, port: int | None) -> bool:
    """Add the routes to ``tornado_app`` once and record this process as the database's owner."""
    with _lock:
        if tornado_app in _mounted:
            return False
        _mounted.add(tornado_app)
    prefix = getattr(tornado_app, "prefix", "") or ""
    tornado_app.add_handlers(r".*", routes(prefix))
    from .roles import install_authorize_callback

    install_authorize_callback()  # later pages are refused before any session is built (the app refuses too)
    if port:
        record(_local_url(address, port, prefix))
    return True


def record(url: str) -> owner_record.Owner:
    """Write the owner record for this process's database; removed again when the process exits."""
    database = get_settings().database
    owner = owner_record.write_owner(database, url, token())
    pid = owner.pid
    atexit.register(owner_record.remove_owner, database, pid)
    log.info("VisionLens API at %s%s (token in %s)", url, "/vl/api/v1", owner_record.record_path(database))
    return owner


def _servers() -> list[Any]:
    from bokeh.server.server import BaseServer

    def is_server(o: Any) -> bool:
        try:
            return isinstance(o, BaseServer)
        except ReferenceError:  # a weak proxy whose object is gone
            return False

    return [o for o in gc.get_objects() if is_server(o)]


def _request_handler_on_stack() -> Any:
    """The Tornado handler whose request is building this session, found on the call stack: Bokeh builds the
    first document inside the page request's coroutine. Microseconds, where a scan of live objects took 1.5 s."""
    from tornado.web import RequestHandler

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, RequestHandler):
            return candidate
        frame = frame.f_back
    return None


def _local_endpoint(request: Any) -> tuple[str | None, int | None]:
    """The address and port this request arrived at: reachable from this machine whatever ``--address`` was."""
    try:
        host, port = request.connection.stream.socket.getsockname()[:2]
    except (AttributeError, OSError, TypeError, ValueError):
        return None, None
    return host, int(port)


def mount_current() -> None:
    """Called by the app in each session: on the first session of an application, mount on its server."""
    import panel as pn

    doc = pn.state.curdoc
    context = getattr(doc, "session_context", None)
    if context is None:
        return  # a notebook or plain Python: no server to mount on
    fair_start.install()
    try:
        app_context = context.server_context.application_context
    except (AttributeError, ReferenceError):
        return
    with _lock:
        if app_context in _seen_contexts:
            return
        _seen_contexts.add(app_context)
    handler = _request_handler_on_stack()
    tornado_app = getattr(handler, "application", None)
    if handler is not None and any(c is app_context for c in getattr(tornado_app, "_applications", {}).values()):
        mount(tornado_app, *_local_endpoint(handler.request))
        log.debug("mounted on the server of the request building this session")
        return
    log.debug("no request handler on the stack: looking for the server among live objects")
    for server in _servers():
        tornado_app = getattr(server, "_tornado", None)
        contexts = getattr(tornado_app, "_applications", {})
        if any(c is app_context for c in contexts.values()):
            mount(tornado_app, server.address, server.port)
            return
    log.warning("could not find the server running this app: image routes and the API are not mounted")


def mount_for(tornado_app: Any, request: Any = None) -> None:
    """From a request on a route that ``--plugins`` added: the process is about to open the database, so it
    becomes the owner (routes and record) even before any page was opened."""
    with _lock:
        if tornado_app in _mounted or tornado_app in _searched:
            return
        _searched.add(tornado_app)  # one look per application, found or not: this runs on every image request
    if request is not None:
        mount(tornado_app, *_local_endpoint(request))
        return
    for server in _servers():
        if getattr(server, "_tornado", None) is tornado_app:
            mount(tornado_app, server.address, server.port)
            return


class AppServer:
    """A running app server inside this process (``vl.launch_app``): its URL, and ``stop()``."""

    def __init__(self, server: Any, thread: threading.Thread, url: str):
        self.server, self.thread, self.url = server, thread, url

    def __repr__(self) -> str:
        return f"<VisionLens app at {self.url}/browse>"

    def _repr_html_(self) -> str:
        from html import escape

        link = escape(self.url + "/browse")
        return f'VisionLens app: <a href="{link}" target="_blank">{link}</a>'

    def stop(self) -> None:
        loop = self.server.io_loop
        loop.add_callback(self.server.stop)
        loop.add_callback(loop.stop)
        self.thread.join(timeout=10)
        owner_record.remove_owner(get_settings().database, only_pid=os.getpid())


def launch_app(
    dataset: Any = None,
    port: int = 5006,
    address: str = "127.0.0.1",
    websocket_origin: list[str] | None = None,
    **serve_kwargs: Any,
) -> AppServer:
    """Serve the app from this process in a background thread; code here and the page share one store."""
    import asyncio

    import panel as pn

    from ..ui.app import build

    name = getattr(dataset, "name", dataset)
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            server = pn.serve(
                {"browse": lambda: build(name)},
                port=port,
                address=address,
                websocket_origin=websocket_origin or [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"],
                show=False,
                start=False,
                threaded=False,
                title="VisionLens",
                verbose=False,  # stdout belongs to the caller's script; the URL is on the returned object
                **serve_kwargs,
            )
            holder["server"] = server
        except BaseException as e:  # reported to the caller, who is waiting on ``started``
            holder["error"] = e
            started.set()
            return
        mount(server._tornado, address, server.port)
        started.set()
        server.start()
        server.io_loop.start()

    thread = threading.Thread(target=run, name="visionlens-app", daemon=True)
    thread.start()
    started.wait(60)
    if "error" in holder:
        raise holder["error"]
    server = holder["server"]
    return AppServer(server, thread, _local_url(address, server.port, server.prefix or ""))
