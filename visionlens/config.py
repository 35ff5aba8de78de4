"""Where VisionLens keeps its files; every path can be moved with a ``VISIONLENS_*`` environment variable.

Settings are read per call (not frozen at import) so tests and notebooks can point ``VISIONLENS_HOME`` elsewhere
before opening a store.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".visionlens"


class Settings(BaseSettings):
    """Process configuration. ``VISIONLENS_HOME=/data/vl`` moves every default at once."""

    model_config = SettingsConfigDict(env_prefix="VISIONLENS_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=_default_home)
    db_path: Path | None = None
    qdrant_path: Path | None = None
    qdrant_url: str | None = None
    """A Qdrant server or cluster (``http://qdrant:6333``) instead of the embedded store; the ``qdrant_*`` settings
    below apply to it only. Collections already on the server keep the layout they were created with."""
    qdrant_api_key: str | None = None
    qdrant_prefer_grpc: bool = False
    """Talk gRPC (``qdrant_grpc_port``) rather than REST: smaller messages for vectors and long id lists."""
    qdrant_grpc_port: int = 6334
    qdrant_shards: int | None = None
    """``shard_number`` of new collections; unset: the server's default (one shard per node in a cluster)."""
    qdrant_replicas: int | None = None
    """``replication_factor`` of new collections; unset: the server's default (1)."""
    qdrant_write_consistency: int | None = None
    """``write_consistency_factor``: replicas that confirm a write before it returns. Equal to ``qdrant_replicas``,
    a search right after an upsert sees it on whichever replica answers."""
    qdrant_on_disk: bool = False
    """Keep new collections' vectors on disk (memory-mapped) instead of in RAM."""
    thumbnail_dir: Path | None = None
    thumbnail_size: int = 256
    llm: str | None = None
    """Language model for the insight agents: ``openai:<model>`` (any OpenAI-compatible endpoint: set
    ``llm_base_url`` for Ollama or vLLM) or ``anthropic:<model>``. Unset: reports are written from templates."""
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_multimodal: bool = False
    roles_file: Path | None = None
    """Viewer/editor/admin per user for a team server (``server/roles.py``); unset: everyone is an admin."""
    allowed_roots: str | None = None
    """Where the server may read datasets from for ingest requests of web users and API clients: folders or
    ``gs://`` prefixes separated by ``,`` or the OS path separator. Unset: the user's home and the demo folder."""
    map_parquet_threshold: int = 2_000_000
    """Maps with more points than this are also written as Parquet beside the database (``<home>/maps`` by
    default) and drawn through Dask (``visionlens[dask]``) instead of one in-memory frame per colouring."""
    dask_scheduler: str | None = None
    """Dask scheduler (``tcp://host:8786``) that ``embed`` and ``thumbnails`` run their work on (the
    ``visionlens[dask]`` extra); ``--dask ADDRESS`` overrides it, ``--dask none`` runs in this process. Unset: here."""

    @field_validator("qdrant_shards", "qdrant_replicas", "qdrant_write_consistency")
    @classmethod
    def _at_least_one(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"VISIONLENS_{info.field_name.upper()} must be at least 1, got {value}")
        return value

    @field_validator("qdrant_grpc_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"VISIONLENS_QDRANT_GRPC_PORT must be a TCP port (1-65535), got {value}")
        return value

    @model_validator(mode="after")
    def _consistency_within_replicas(self) -> Settings:
        """Caught when the settings are read rather than when the first collection is created on the server."""
        w, r = self.qdrant_write_consistency, self.qdrant_replicas
        if w is not None and r is not None and w > r:
            raise ValueError(
                f"VISIONLENS_QDRANT_WRITE_CONSISTENCY ({w}) cannot exceed VISIONLENS_QDRANT_REPLICAS ({r}): "
                "a write cannot wait for more replicas than there are"
            )
        return self

    @property
    def database(self) -> Path:
        return self.db_path or self.home / "visionlens.duckdb"

    @property
    def vectors(self) -> Path:
        return self.qdrant_path or self.home / "qdrant"

    @property
    def thumbnails(self) -> Path:
        return self.thumbnail_dir or self.home / "thumbnails"

    @property
    def demo_dir(self) -> Path:
        return self.home / "demo"


_last: tuple[tuple[tuple[str, str], ...], Settings] | None = None


def get_settings() -> Settings:
    """The settings as the environment gives them now (frozen, shared), parsed again only when a ``VISIONLENS_``
    variable or ``HOME`` (the default home's parent) changed: a parse costs milliseconds of Python under the GIL,
    and every new page and image request asked for the settings, so tests and notebooks that point
    ``VISIONLENS_HOME`` elsewhere still take effect at once."""
    global _last
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("VISIONLENS_") or k == "HOME"))
    last = _last
    if last is not None and last[0] == env:
        return last[1]
    settings = Settings()
    _last = (env, settings)
    return settings
