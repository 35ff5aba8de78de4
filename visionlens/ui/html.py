"""The one place where text from a dataset becomes markup: the web page must never run text from a dataset.

File names, field names and values, labels, model and dataset names, error messages and shared links all come from
outside. Panes that render HTML (``pn.pane.HTML``), Markdown (``pn.pane.Markdown``, ``pn.pane.Alert``), Panel's
notifications, Bokeh's ``MultiChoice`` options (Choices.js with ``allowHTML``), Tabulator column titles and the
label of Panel's editable sliders all take markup, so every view builds them with these functions. JS components
(``grid.js``, the detail image) put data into the DOM with ``textContent`` / ``setAttribute``, never ``innerHTML``.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["attr", "choices", "el", "md", "text"]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~$-])")


def text(value: Any) -> str:
    """Text for an HTML context (element content or a quoted attribute): ``<``, ``>``, ``&`` and quotes escaped."""
    return _html.escape("" if value is None else str(value), quote=True)


attr = text  # the same escaping is right for double- or single-quoted attribute values


def md(value: Any) -> str:
    """Text for a Markdown context: HTML-escaped, and Markdown punctuation backslash-escaped so that ``*.json``
    or ``my_model_v2`` read as written instead of turning into italics or links."""
    escaped = _html.escape("" if value is None else str(value), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", escaped).replace("\n", " ")


def el(tag: str, content: Any, **attrs: Any) -> str:
    """``<tag attr="...">content</tag>`` with the content and every attribute value escaped.

    Attribute names are fixed by the caller (``class_`` for ``class``, ``data_id`` for ``data-id``).
    """
    if not re.fullmatch(r"[a-z][a-z0-9]*", tag):
        raise ValueError(f"not a tag name: {tag!r}")
    parts = [f' {k.rstrip("_").replace("_", "-")}="{attr(v)}"' for k, v in attrs.items() if v is not None]
    return f"<{tag}{''.join(parts)}>{text(content)}</{tag}>"


def choices(values: Iterable[Any], labels: Iterable[str] | None = None) -> dict[str, Any]:
    """Options for a ``MultiChoice``: Bokeh renders its option labels as HTML, so the labels are escaped here
    (each value keeps its raw form; only what the browser shows is escaped)."""
    values = list(values)
    shown = list(labels) if labels is not None else [str(v) for v in values]
    return {text(label): value for label, value in zip(shown, values)}
