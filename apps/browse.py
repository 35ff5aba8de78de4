"""VisionLens browser: ``panel serve apps/browse.py --plugins visionlens.ui.routes`` (``make serve`` does this)."""

from visionlens.ui.app import build

build().servable()
