"""The one escaping helper every view builds markup with."""

from __future__ import annotations

import pytest

from visionlens.ui.html import choices, el, md, text

PAYLOAD = "<img src=x onerror=alert(1)>"


def test_text_and_elements_escape_content_and_attributes():
    assert text(PAYLOAD) == "&lt;img src=x onerror=alert(1)&gt;"
    assert text(None) == "" and text(3) == "3"
    assert el("b", PAYLOAD, class_="vl-title", data_id='1" onclick="x') == (
        '<b class="vl-title" data-id="1&quot; onclick=&quot;x">&lt;img src=x onerror=alert(1)&gt;</b>'
    )
    with pytest.raises(ValueError):
        el("img src=x", "")


def test_markdown_text_keeps_its_punctuation_and_no_markup():
    assert md(PAYLOAD) == "&lt;img src=x onerror=alert\\(1\\)&gt;"
    assert md("my_model_v2 *.json") == "my\\_model\\_v2 \\*.json"  # no italics
    assert md("[a](javascript:x)") == "\\[a\\]\\(javascript:x\\)"  # no link
    assert md('it\'s "quoted"') == 'it\'s "quoted"'  # quotes stay readable (no entities to break)


def test_multichoice_options_show_escaped_labels_and_keep_raw_values():
    assert choices([PAYLOAD, "car"]) == {text(PAYLOAD): PAYLOAD, "car": "car"}
    assert choices([PAYLOAD], [f"{PAYLOAD} (3)"]) == {f"{text(PAYLOAD)} (3)": PAYLOAD}


def test_js_components_never_write_markup():
    """grid.js and the detail image put data into the DOM with textContent / setAttribute only."""
    import re
    from pathlib import Path

    from visionlens.ui.detail_component import AnnotatedImage

    ui = Path(__file__).resolve().parents[1] / "visionlens" / "ui"
    sources = {p.name: p.read_text() for p in ui.glob("*.js")}
    sources["detail_component._esm"] = AnnotatedImage._esm
    assert "grid.js" in sources
    for name, source in sources.items():
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(", source), name
