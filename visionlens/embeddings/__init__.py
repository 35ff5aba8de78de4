"""Image embedders and the job that runs them over a dataset.

Every embedder has the same small surface so the runner, the importer and the app never care which model made
a vector:

* ``name``: also the vector collection name, so vectors of different models (or weights) never mix;
* ``dim``: vector length;
* ``image_size``: the side the model looks at, a hint that lets JPEG decoding skip resolution it would throw away;
* ``transform``: PIL image -> array (builtin: numpy) or tensor (CLIP); picklable, run in decoding threads;
* ``embed_batch(pixels)``: stacked ``transform`` outputs -> float32 ``[batch, dim]``, L2-normalised.

Only the CLIP embedder needs torch and open_clip (the ``visionlens[clip]`` extra); they are imported when it is
loaded, so the core install (builtin embedder, runner, import of vectors computed elsewhere) has no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

from visionlens.errors import VisionLensError

__all__ = ["CLIP_EXTRA", "Embedder", "EmbedderError", "load_embedder", "require_clip"]

CLIP_EXTRA = "pip install 'visionlens[clip]'"


class EmbedderError(VisionLensError):
    """An embedder cannot be built or fed: unknown model or tag, weights unavailable, bad input files."""


class Embedder(Protocol):
    name: str
    dim: int
    image_size: int
    transform: Callable[[Image.Image], np.ndarray | torch.Tensor]

    def embed_batch(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray: ...


def require_clip() -> None:
    """Raise a clear ``EmbedderError`` naming the extra when torch or open_clip is not installed.

    Only looks the modules up (no import), so it costs nothing where they are installed.
    """
    from importlib.util import find_spec

    for module, what in (
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("open_clip", "open_clip (open-clip-torch)"),
    ):
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise EmbedderError(f"the CLIP embedder needs {what}: {CLIP_EXTRA}")


def load_embedder(spec: str = "builtin", **options: Any) -> Embedder:
    """``"builtin"`` (no weights needed) or ``"clip"`` / ``"clip:MODEL"`` / ``"clip:MODEL/PRETRAINED_TAG"``.

    ``options`` go to the embedder (for CLIP: ``weights=``, ``random_init=``, ``device=``, ``offline=``), so a CLI
    flag or a settings string is enough to pick a model.
    """
    kind, _, rest = spec.partition(":")
    if kind == "builtin" and not rest:
        from .builtin import BuiltinEmbedder

        return BuiltinEmbedder(**options)
    if kind == "clip":
        require_clip()
        from .clip import DEFAULT_MODEL, DEFAULT_PRETRAINED, ClipEmbedder

        model, _, tag = rest.partition("/")
        return ClipEmbedder(model or DEFAULT_MODEL, tag or options.pop("pretrained", DEFAULT_PRETRAINED), **options)
    raise EmbedderError(f"unknown embedder {spec!r}; use 'builtin', 'clip' or 'clip:MODEL/PRETRAINED'")
