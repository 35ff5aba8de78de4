"""`vl.app(ds)` in Jupyter: a real kernel executes a notebook that displays the app."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

CELLS = [
    "import visionlens as vl\nds = vl.load('demo')\napp = vl.app(ds)\napp",
    "from visionlens.ui.grid_view import GridView\n"
    "items = GridView(state=app.state, thumbnails='data').window(0, 4)\n"
    "assert len(items) == 4 and all(i['thumb'].startswith('data:image/jpeg;base64,') for i in items)\n"
    "assert any(b['kind'] == 'gt' for i in items for b in i['boxes'])\n"
    "print('thumbs ok', app.state.count)",
]


def test_notebook_displays_the_app(home, demo_ds):
    demo_ds.store.close()  # the kernel is another process: it needs the database file to itself
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    env_before = os.environ.get("VISIONLENS_HOME")
    assert env_before == str(home)
    client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(home)}})
    client.execute()
    display = nb.cells[0].outputs
    mimes = {m for o in display for m in o.get("data", {})}
    assert any("bokeh" in m or "holoviews" in m for m in mimes), mimes
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "thumbs ok 120" in text
