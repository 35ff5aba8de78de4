"""VisionLens: ``panel serve apps/browse.py`` serves the whole app, its image routes and its HTTP API."""

from visionlens.ui.app import build

build().servable()
