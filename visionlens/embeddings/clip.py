"""CLIP image and text embeddings through open_clip, for any (model, pretrained tag) pair it knows.

Weights come from the Hugging Face hub cache (downloaded once when online) or from a local file. Without
network and without a cached or local copy we fail at once with what to do, instead of letting the hub client
retry for minutes: the machine running VisionLens is often offline or firewalled.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from . import EmbedderError, require_clip

require_clip()  # torch, torchvision and open_clip come with the `visionlens[clip]` extra; say so, not ImportError

import torch  # noqa: E402

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"
_PROBE_SECONDS = 3.0


def pick_device(device: str | None = None) -> torch.device:
    """cuda, then Apple's mps, then cpu, unless the caller names one."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = _PROBE_SECONDS) -> bool:
    """One TCP connect to the hub, bounded in time even when DNS hangs (it ignores socket timeouts)."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])


def go_offline() -> None:
    """Make every later hub call answer from the cache only (the hub client reads the flag at import time)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass


def _cached_weights(model: str, tag: str, cache_dir: str | None) -> bool:
    """Whether the hub cache already holds this pair's checkpoint (so no network is needed)."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    repo, filename = os.path.split(cfg.get("hf_hub", ""))
    if not repo:
        return False  # url-only weights live in open_clip's own cache; let open_clip try (it is not the hub)
    candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename.endswith((".bin", ".pth")):
        candidates.insert(0, filename[:-4] + ".safetensors")
    return any(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir), str) for f in candidates)


def _collection_name(model: str, source: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"clip-{model}-{source}").strip("-")[:128]


class ClipEmbedder:
    """An open_clip model in eval mode on the best available device.

    ``weights=PATH`` loads a local checkpoint; with a ``pretrained`` tag the tag's preprocessing and activation
    settings still apply (the file is taken to be that tag's checkpoint). ``random_init=True`` builds the real
    architecture with random weights, for tests and benchmarks that must run offline.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        *,
        weights: str | os.PathLike[str] | None = None,
        random_init: bool = False,
        device: str | None = None,
        offline: bool | None = None,
        cache_dir: str | None = None,
    ):
        import open_clip

        if model not in open_clip.list_models():
            raise EmbedderError(f"open_clip has no model {model!r}; known models include {open_clip.list_models()[:8]}")
        self.device = pick_device(device)
        kwargs: dict = {"device": self.device, "cache_dir": cache_dir}
        if random_init:
            source, weight_arg = "random", None
        else:
            if pretrained and pretrained not in open_clip.list_pretrained_tags_by_model(model):
                raise EmbedderError(
                    f"{model!r} has no pretrained tag {pretrained!r}; "
                    f"choose one of {open_clip.list_pretrained_tags_by_model(model)}"
                )
            if weights is not None:
                weight_arg = str(self._local_weights(weights))
                source = f"{pretrained or 'file'}-{Path(weights).stem}"
                if pretrained:
                    kwargs.update(self._tag_settings(open_clip.get_pretrained_cfg(model, pretrained)))
            elif pretrained:
                self._require_weights(model, pretrained, offline, cache_dir)
                source, weight_arg = pretrained, pretrained
            else:
                raise EmbedderError("ClipEmbedder needs a pretrained tag, weights=PATH, or random_init=True")
        try:
            net, _, transform = open_clip.create_model_and_transforms(model, pretrained=weight_arg, **kwargs)
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            raise EmbedderError(f"could not load CLIP {model} weights from {weight_arg}: {exc}") from exc
        self.model = net.eval()
        self.transform = transform
        self.tokenizer = open_clip.get_tokenizer(model)
        self.name = _collection_name(model, source)
        size = net.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.dim = int(self.embed_text(["a photo"]).shape[1])

    def __repr__(self) -> str:
        return f"ClipEmbedder({self.name!r}, dim={self.dim}, device={self.device})"

    @staticmethod
    def _local_weights(weights: str | os.PathLike[str]) -> Path:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise EmbedderError(f"CLIP weights file {path} does not exist")
        return path

    @staticmethod
    def _tag_settings(cfg: dict) -> dict:
        """The settings open_clip would apply for the tag: without quick_gelu the openai weights embed garbage."""
        out = {"force_quick_gelu": bool(cfg.get("quick_gelu", False))}
        for key, arg in (
            ("mean", "image_mean"),
            ("std", "image_std"),
            ("interpolation", "image_interpolation"),
            ("resize_mode", "image_resize_mode"),
        ):
            if cfg.get(key) is not None:
                out[arg] = cfg[key]
        return out

    @staticmethod
    def _require_weights(model: str, tag: str, offline: bool | None, cache_dir: str | None) -> None:
        """Fail fast and clearly when the checkpoint is neither cached nor downloadable."""
        if offline is None:
            offline = _truthy(os.environ.get("HF_HUB_OFFLINE"))
        if offline:
            go_offline()
        if _cached_weights(model, tag, cache_dir):
            return
        if not offline and not _hub_reachable():
            go_offline()
            offline = True
        if offline:
            raise EmbedderError(
                f"CLIP weights for {model}/{tag} are not in the Hugging Face cache and the hub cannot be reached "
                "(offline). Download them once on a machine with network (the same HF_HOME), pass weights=PATH to a "
                "local checkpoint, or use the 'builtin' embedder, which needs no weights."
            )

    @torch.inference_mode()
    def embed_batch(self, pixels: torch.Tensor) -> np.ndarray:
        pixels = pixels.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            features = self.model.encode_image(pixels)
        return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Text vectors in the image space, for "find images of a red car" search."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            features = self.model.encode_text(tokens)
        return torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy()
