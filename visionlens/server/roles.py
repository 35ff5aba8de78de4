"""Who may do what on a team server: viewer, editor and admin, from a roles file.

    # VISIONLENS_ROLES_FILE=roles.yaml
    default: viewer        # anyone who logged in and is not listed; leave it out to refuse them
    users:
      ann: admin
      bob: editor

Without a roles file everyone who may open the app is an admin: one person on their own machine needs no roles.
The same answer serves the page (``AppState.can`` hides what a role may not do and the views refuse it again
when asked), the HTTP API (each handler names the action of each method) and Panel's authorization callback.
The file is re-read when it changes, so an admin edits it without restarting the server.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..config import get_settings
from ..errors import NotAllowedError

__all__ = ["ROLES", "ACTIONS", "role_of", "can", "require", "authorize", "install_authorize_callback", "TOKEN_USER"]

ROLES = ("viewer", "editor", "admin")
TOKEN_USER = "token"
"""The owner's token stands for the machine's own user: an admin."""

ACTIONS: dict[str, str] = {
    "read": "viewer",
    "tag": "editor",
    "views": "editor",
    "evaluate": "editor",
    "embed": "editor",
    "insights": "editor",
    "export": "editor",
    "thumbnails": "editor",
    "cancel": "editor",
    "ingest": "admin",
    "delete": "admin",
    "plugins": "admin",
}
"""Each action and the least role that may take it."""

_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _load(path: Path) -> dict[str, Any]:
    """The roles file as ``{"default": role|None, "users": {name: role}}``, checked, cached by modification time."""
    import yaml

    mtime = path.stat().st_mtime
    with _lock:
        hit = _cache.get(str(path))
        if hit and hit[0] == mtime:
            return hit[1]
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise NotAllowedError(f"{path}: a roles file maps 'users' to roles and may give a 'default' role")
    users = raw.get("users") or {}
    default = raw.get("default")
    for who, role in [*users.items(), ("default", default)]:
        if role is not None and role not in ROLES:
            raise NotAllowedError(f"{path}: {who!r} has role {role!r}; roles are {', '.join(ROLES)}")
    doc = {"default": default, "users": {str(k): v for k, v in users.items()}}
    with _lock:
        _cache[str(path)] = (mtime, doc)
    return doc


def role_of(user: str | None) -> str | None:
    """The user's role, or None when the roles file lets them in under no role at all."""
    if user == TOKEN_USER:
        return "admin"
    path = get_settings().roles_file
    if path is None:
        return "admin"
    doc = _load(Path(path).expanduser())
    return doc["users"].get(user or "", doc["default"])


def can(user: str | None, action: str) -> bool:
    role = role_of(user)
    needed = ACTIONS.get(action, "admin")  # an action nobody named needs the most trust
    return role is not None and ROLES.index(role) >= ROLES.index(needed)


def require(user: str | None, action: str) -> None:
    if not can(user, action):
        role = role_of(user)
        who = f"{user!r} ({role or 'no role'})" if user else f"this session ({role or 'no role'})"
        raise NotAllowedError(f"{who} may not {action}: that needs the {ACTIONS.get(action, 'admin')} role")


def authorize(user_info: dict[str, Any] | None) -> bool:
    """Panel's ``authorize_callback``: only users with a role may open a page. Panel calls it with the request's
    cookies in place (a temporary session), so the signed login cookie names the user."""
    import panel as pn

    try:
        return role_of(pn.state.user) is not None
    except NotAllowedError:
        return False


def install_authorize_callback() -> None:
    """Make ``authorize`` the server's callback; with no roles file there is nothing to refuse."""
    import panel as pn

    if get_settings().roles_file is None:
        return
    # ``pn.config.authorize_callback = ...`` inside a session sets that session's value (Bokeh's current document
    # stays visible to Panel even under ``set_curdoc(None)``); the server's own check reads the global value,
    # which Panel keeps in the config's stored values: set it there.
    pn.config._param__private.values["authorize_callback"] = authorize
