"""The light install: the core package works without torch/torchvision/open_clip (and gcsfs, pydantic_ai), and
environment.yml stays equivalent to ``visionlens[all]``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ("torch", "torchvision", "open_clip", "gcsfs", "pydantic_ai")
CONDA_NAMES = {"torch": "pytorch", "duckdb": "python-duckdb"}  # pip name -> conda-forge name


def _name(requirement: str) -> str:
    """PEP 503-normalised project name of a requirement string (drops extras, versions and markers)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def _expand(extras: dict[str, list[str]], names: list[str]) -> list[str]:
    out = []
    for extra in names:
        for req in extras[extra]:
            if _name(req) == "visionlens":
                inner = re.search(r"\[(.*)\]", req).group(1)
                out += _expand(extras, [e.strip() for e in inner.split(",")])
            else:
                out.append(req)
    return out


def test_environment_yml_covers_core_and_all_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"clip", "gcs", "agents", "all", "dev"} <= set(extras)
    core = {_name(r) for r in project["dependencies"]}
    assert not core & {"torch", "torchvision", "open-clip-torch", "gcsfs", "pydantic-ai-slim"}, core
    wanted = core | {_name(r) for r in _expand(extras, ["all"])}
    assert {"torch", "torchvision", "open-clip-torch", "gcsfs", "pydantic-ai-slim"} <= wanted

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda, pip = set(), set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip |= {_name(r) for r in dep["pip"]}
        else:
            conda.add(_name(dep))
    assert any(re.fullmatch(r"python\s*>=\s*3\.10", d) for d in env["dependencies"] if isinstance(d, str))
    missing = [n for n in sorted(wanted) if n not in pip and CONDA_NAMES.get(n, n) not in conda]
    assert not missing, f"environment.yml lacks {missing}"


SCRIPT = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    HIDDEN = {hidden!r}

    class Hide(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in HIDDEN:
                raise ImportError(f"{{name}} is hidden (light install)", name=name)
            return None

    sys.meta_path.insert(0, Hide())
    sys.path.insert(0, {tests!r})

    import json
    from pathlib import Path

    import numpy as np

    import visionlens
    from factories import coco_doc, image, write_coco
    from visionlens.embedding_jobs import close_vector_stores, embed_dataset, project_dataset, vector_store
    from visionlens.embeddings import EmbedderError, load_embedder
    from visionlens.store.metadata import open_store

    root = Path({root!r})
    colours = [(200, 40, 30), (30, 60, 200), (40, 180, 60), (220, 220, 40), (90, 90, 90), (250, 250, 250)]
    images = [{{"id": i + 1, "file_name": f"im{{i}}.jpg", "width": 64, "height": 48}} for i in range(6)]
    boxes = [{{"id": 10 + i, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [4, 4, 30, 20], "area": 600,
               "iscrowd": 0}} for i in range(6)]
    write_coco(root / "ds", coco_doc(images, boxes), make_images=False)
    for im, colour in zip(images, colours):
        image(root / "ds" / "images" / im["file_name"], (64, 48), colour)
    preds = [{{"image_id": i + 1, "category_id": 1, "bbox": [5, 4, 30, 20], "score": 0.9}} for i in range(6)]
    (root / "preds.json").write_text(json.dumps(preds))

    store = open_store()
    ds = visionlens.ingest(root / "ds" / "annotations.json", "light", predictions={{"det": root / "preds.json"}},
                           store=store)
    assert ds.count() == 6, ds.count()
    assert ds.count({{"annotations": [{{"labels": ["car"]}}]}}) == 3
    ds.evaluate("det")
    fps = ds.count({{"annotations": [{{"source": "det", "status": ["fp"]}}]}})
    assert fps == 3, fps

    summary = embed_dataset(store, ds.id, "builtin", num_workers=2)
    assert (summary.embedded, summary.failed) == (6, []), summary
    again = embed_dataset(store, ds.id, "builtin", num_workers=0)
    assert (again.embedded, again.skipped) == (0, 6), again
    assert vector_store().count("builtin-colorstats-v1") == 6
    assert project_dataset(store, ds.id, "builtin-colorstats-v1", "pca") == 6

    try:
        load_embedder("clip")
    except EmbedderError as exc:
        message = str(exc)
    else:
        raise AssertionError("load_embedder('clip') worked without torch")

    try:
        visionlens.media.read_bytes("gs://bucket/a.jpg")
    except ImportError as exc:
        assert "visionlens[gcs]" in str(exc), exc
    else:
        raise AssertionError("gs:// worked without gcsfs")

    # insights and their template report need no extra; the app (with its Insights tab) imports
    from visionlens.insights.agents import build_agent, explain
    from visionlens.errors import VisionLensError
    from visionlens.ui.app import build  # noqa: F401
    found = ds.insights(kinds=["error_pattern", "label_mistake"])
    assert found and explain(store, ds.id, "error_patterns").written_by == "template"
    try:
        build_agent("error_patterns")
    except VisionLensError as exc:
        assert "visionlens[agents]" in str(exc), exc
    else:
        raise AssertionError("an agent was built without pydantic-ai")
    close_vector_stores()
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in HIDDEN)
    print(json.dumps({{"clip": message, "loaded": loaded}}))
    """
)


def test_core_works_without_torch_gcsfs_or_pydantic_ai(tmp_path):
    script = SCRIPT.format(hidden=HIDDEN, tests=str(ROOT / "tests"), root=str(tmp_path))
    env = {**os.environ, "VISIONLENS_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("VISIONLENS_") or k == "VISIONLENS_HOME"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["clip"] == "the CLIP embedder needs torch: pip install 'visionlens[clip]'"
