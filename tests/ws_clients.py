"""Sessions opened by bare websocket clients: the server's side of opening a page, without a browser's CPU.

A browser opening the app asks the server for a session (Bokeh builds its document on the event loop every session
shares), receives that document, and then fetches the thumbnails of the tiles the document already carries (the grid
pushes its first window with it). A client here does the same over Bokeh's own protocol, as ``bokeh.client`` does:
a websocket to ``/browse/ws`` with a fresh session token (the server builds the session for it), a PULL-DOC request,
and the document's first tiles' thumbnails over HTTP (six at a time, as a browser fetches from one host), each
decoded with Pillow. On a small machine the browsers' own rendering is most of what a page waits for; these clients
measure what the server makes each of many users wait.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

from bokeh.util.token import generate_jwt_token, generate_session_id
from PIL import Image
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect


@dataclass
class WsOpen:
    """One client's timings (ms from its start) or its error."""

    document_ms: float | None = None
    thumbnails_ms: float | None = None
    tiles: int = 0
    error: str | None = None
    parts: dict[str, float] = field(default_factory=dict)
    ws: Any = None


def _plain(value: Any) -> Any:
    """Bokeh's serialized values (maps, objects, lists) as plain dicts and lists."""
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "map":
            return {_plain(k): _plain(v) for k, v in value.get("entries", [])}
        if kind == "object":
            return {"__name__": value.get("name"), **{k: _plain(v) for k, v in value.get("attributes", {}).items()}}
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def first_tiles(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The tiles the grid pushed with the document: the items of its ``items`` window, in order."""
    found: list[list[dict[str, Any]]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            items = value.get("items")
            if isinstance(items, str) and items.startswith("[") and '"thumb"' in items:  # the grid's JSON window
                items = json.loads(items)
            if isinstance(items, list) and items and isinstance(items[0], dict) and "thumb" in items[0]:
                found.append(items)
                return
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(_plain(doc))
    return found[0] if found else []


async def _read_message(ws: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One Bokeh protocol message: header, metadata and content frames, then its binary buffers (skipped)."""
    frames = []
    for _ in range(3):
        frame = await ws.read_message()
        if frame is None:
            raise ConnectionError("the server closed the websocket")
        frames.append(frame)
    header = json.loads(frames[0])
    for _ in range(2 * int(header.get("num_buffers", 0) or 0)):  # each buffer: a header frame and a payload frame
        await ws.read_message()
    return header, json.loads(frames[2])


async def _send(ws: Any, msgtype: str, msgid: str, content: dict[str, Any]) -> None:
    await ws.write_message(json.dumps({"msgid": msgid, "msgtype": msgtype}))
    await ws.write_message("{}")
    await ws.write_message(json.dumps(content))


async def open_one(base: str, path: str, visible: int, timeout: float) -> WsOpen:
    """Open one session on ``base + path`` and fetch its first ``visible`` thumbnails."""
    out = WsOpen()
    start = time.perf_counter()
    ws = None
    try:
        session_id = generate_session_id()
        token = generate_jwt_token(session_id, extra_payload={"headers": {}, "cookies": {}, "arguments": {}})
        ws_url = base.replace("http://", "ws://") + path.rstrip("/") + "/ws"
        ws = await asyncio.wait_for(
            websocket_connect(HTTPRequest(ws_url), subprotocols=["bokeh", token], max_message_size=1 << 30),
            timeout,
        )
        header, _ = await asyncio.wait_for(_read_message(ws), timeout)
        if header.get("msgtype") != "ACK":
            raise ConnectionError(f"expected ACK, got {header.get('msgtype')}")
        out.parts["session"] = (time.perf_counter() - start) * 1000
        await _send(ws, "PULL-DOC-REQ", "1", {})
        while True:
            header, content = await asyncio.wait_for(_read_message(ws), timeout)
            if header.get("msgtype") == "PULL-DOC-REPLY":
                break
            if header.get("msgtype") == "ERROR":
                raise ConnectionError(f"server error: {content}")
        out.document_ms = (time.perf_counter() - start) * 1000
        # what the browser says once it has rendered the document: the server runs the page's onload work then,
        # so these clients load the server as pages do
        ready = {"type": "event", "name": "document_ready", "values": {"type": "map", "entries": []}}
        await _send(
            ws, "PATCH-DOC", "2", {"events": [{"kind": "MessageSent", "msg_type": "bokeh_event", "msg_data": ready}]}
        )
        tiles = first_tiles(content.get("doc", {}))[:visible]
        out.tiles = len(tiles)
        if not tiles:
            raise ValueError("the document carries no tiles")
        client = AsyncHTTPClient(max_clients=6)
        gate = asyncio.Semaphore(6)

        async def fetch(tile: dict[str, Any]) -> None:
            async with gate:
                url = tile["thumb"] if "://" in tile["thumb"] else base + "/" + tile["thumb"].lstrip("./")
                response = await client.fetch(url, request_timeout=timeout)
                with Image.open(io.BytesIO(response.body)) as im:
                    im.load()

        await asyncio.gather(*(fetch(t) for t in tiles))
        out.thumbnails_ms = (time.perf_counter() - start) * 1000
        out.ws = ws
    except Exception as exc:  # noqa: BLE001 - every failure is a measured error
        out.error = f"{type(exc).__name__}: {exc}"
        if ws is not None:
            ws.close()
    return out


async def open_many(
    base: str, n: int, path: str = "/browse", visible: int = 24, timeout: float = 120, linger: float = 0.0
) -> list[WsOpen]:
    """``n`` clients started at the same moment; connected until all have their thumbnails and ``linger`` more."""
    opened = list(await asyncio.gather(*(open_one(base, path, visible, timeout) for _ in range(n))))
    await asyncio.sleep(linger)  # the sessions stay connected meanwhile, as open pages do
    for o in opened:
        if o.ws is not None:
            o.ws.close()
    return opened
