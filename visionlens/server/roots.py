"""Which paths a web user or API client may make the server read.

An ingest request names files on the server. Without a limit, anyone who can open the app could read any file
the server's user can (``/etc``, other projects' data, keys) by ingesting it as a dataset and browsing the
images or reading the error messages. Paths are checked after resolving links, so a link inside a root that
points outside it is refused too. The CLI and Python API on the server's own machine are not limited: their
user can read those files anyway.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..config import Settings, get_settings
from ..errors import NotAllowedError

__all__ = ["allowed_roots", "check_allowed"]

_SPLIT = re.compile(r",|;|:(?!//)")


def allowed_roots(settings: Settings | None = None) -> list[str]:
    """Configured roots (``VISIONLENS_ALLOWED_ROOTS``), resolved; default: the home folder and the demo folder."""
    settings = settings or get_settings()
    raw = settings.allowed_roots
    items = [p.strip() for p in _SPLIT.split(raw)] if raw else [str(Path.home()), str(settings.demo_dir)]
    return [p.rstrip("/") + "/" if "://" in p else str(Path(p).expanduser().resolve()) for p in items if p]


def _inside(path: str, root: str) -> bool:
    if "://" in root:
        return path.startswith(root)
    return "://" not in path and Path(path).is_relative_to(root)


def check_allowed(path: str | Path, what: str = "path", settings: Settings | None = None) -> str:
    """``path`` resolved, or ``NotAllowedError`` naming it, the roots and the setting that widens them."""
    s = str(path)
    resolved = s if "://" in s else str(Path(s).expanduser().resolve())
    roots = allowed_roots(settings)
    if any(_inside(resolved, r) for r in roots):
        return resolved
    raise NotAllowedError(
        f"{what} {s!r} is outside the folders this server may read ({', '.join(roots) or 'none'}); "
        "the server's administrator can add it to VISIONLENS_ALLOWED_ROOTS"
    )
