"""Where VisionLens keeps its files; every path can be moved with a ``VISIONLENS_*`` environment variable.

Settings are read per call (not frozen at import) so tests and notebooks can point ``VISIONLENS_HOME`` elsewhere
before opening a store.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".visionlens"


class Settings(BaseSettings):
    """Process configuration. ``VISIONLENS_HOME=/data/vl`` moves every default at once."""

    model_config = SettingsConfigDict(env_prefix="VISIONLENS_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    db_path: Path | None = None
    qdrant_path: Path | None = None
    qdrant_url: str | None = None
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


def get_settings() -> Settings:
    return Settings()
