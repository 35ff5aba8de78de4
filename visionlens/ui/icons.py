"""Button icons as inline SVG (Tabler Icons, MIT licence: https://tabler.io/icons).

A Panel button given an icon by name (``icon="x"``) has Bokeh fetch the Tabler icon font from cdn.jsdelivr.net on
every page load; given SVG text it draws the icon itself, and the page fetches nothing from outside its server.
"""

from __future__ import annotations

__all__ = ["BULB", "FILTER_OFF", "LIST_SEARCH", "WRITING", "X"]


def _svg(*paths: str) -> str:
    """A 24x24 outline icon drawn in the button's text colour."""
    body = "".join(f'<path d="{d}"/>' for d in paths)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
        f'stroke-width="2" stroke-linecap="round" stroke-linejoin="round">{body}</svg>'
    )


BULB = _svg(
    "M3 12h1m8 -9v1m8 8h1m-15.4 -6.4l.7 .7m12.1 -.7l-.7 .7",
    "M9 16a5 5 0 1 1 6 0a3.5 3.5 0 0 0 -1 3a2 2 0 0 1 -4 0a3.5 3.5 0 0 0 -1 -3",
    "M9.7 17l4.6 0",
)
FILTER_OFF = _svg(
    "M8 4h12v2.172a2 2 0 0 1 -.586 1.414l-3.914 3.914m-.5 3.5v4l-6 2v-8.5l-4.48 -4.928a2 2 0 0 1 -.52 -1.345v-2.227",
    "M3 3l18 18",
)
LIST_SEARCH = _svg("M15 15m-4 0a4 4 0 1 0 8 0a4 4 0 1 0 -8 0", "M18.5 18.5l2.5 2.5", "M4 6h16", "M4 12h4", "M4 18h4")
WRITING = _svg(
    "M20 17v-12c0 -1.121 -.879 -2 -2 -2s-2 .879 -2 2v12l2 2l2 -2z",
    "M16 7h4",
    "M18 19h-13a2 2 0 1 1 0 -4h4a2 2 0 1 0 0 -4h-3",
)
X = _svg("M18 6l-12 12", "M6 6l12 12")
