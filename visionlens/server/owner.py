"""The owner record: which process serves a database file's API, where, and with what secret.

DuckDB lets one process write a file (and the embedded vector engine locks its folder the same way), so the
served app owns both and everyone else goes through its HTTP API. The owner writes ``<database>.owner.json``
beside the database, readable only by its user (0600): the URL it listens on, a random token and its pid. A
CLI or notebook reads it to find the owner; a record whose process is gone, or that does not answer with the
same token, is stale and removed.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Owner", "record_path", "write_owner", "read_owner", "remove_owner", "live_owner", "pid_alive"]

CHECK_TIMEOUT_S = 3.0
"""How long a client waits for a live owner's health answer before calling it unresponsive."""


@dataclass(frozen=True)
class Owner:
    url: str
    token: str
    pid: int
    database: str
    started: float

    @property
    def api(self) -> str:
        from .api import API_PREFIX

        return self.url.rstrip("/") + API_PREFIX


def record_path(database: str | os.PathLike[str]) -> Path:
    db = Path(database).expanduser().resolve()
    return db.with_name(db.name + ".owner.json")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_owner(database: str | os.PathLike[str], url: str, token: str) -> Owner:
    """Write the record atomically with mode 0600 (created so, never widened after the fact)."""
    owner = Owner(url=url, token=token, pid=os.getpid(), database=str(Path(database).resolve()), started=time.time())
    path = record_path(database)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(owner), f)
    os.replace(tmp, path)
    return owner


def read_owner(database: str | os.PathLike[str]) -> Owner | None:
    """The record as written, or None when there is none or it is unreadable (a half-written file is stale)."""
    try:
        data = json.loads(record_path(database).read_text())
        return Owner(**{k: data[k] for k in ("url", "token", "pid", "database", "started")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_owner(database: str | os.PathLike[str], only_pid: int | None = None) -> None:
    """Remove the record; with ``only_pid``, only when that process wrote it (a restarted owner keeps its own)."""
    path = record_path(database)
    if only_pid is not None:
        found = read_owner(database)
        if found is not None and found.pid != only_pid:
            return
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def answers(owner: Owner, timeout: float = CHECK_TIMEOUT_S) -> bool:
    """The owner's health route accepts its token: the record describes a running server, not a reused pid."""
    import httpx

    try:
        r = httpx.get(owner.api + "/health", headers={"Authorization": f"Bearer {owner.token}"}, timeout=timeout)
    except (httpx.HTTPError, socket.error):
        return False
    return r.status_code == 200 and r.json().get("pid") == owner.pid


def live_owner(database: str | os.PathLike[str]) -> Owner | None:
    """The running owner of ``database`` other than this process, or None; stale records are removed.

    A record of this very process is not "another owner": code running inside the app's process (a notebook that
    called ``launch_app``) uses the store directly.
    """
    owner = read_owner(database)
    if owner is None:
        if record_path(database).exists():
            remove_owner(database)
        return None
    if owner.pid == os.getpid():
        return None
    if pid_alive(owner.pid) and answers(owner):
        return owner
    if not pid_alive(owner.pid):
        remove_owner(database, only_pid=owner.pid)
        return None
    return None  # alive but not answering (starting or hung): the caller's own open gives the lock error
