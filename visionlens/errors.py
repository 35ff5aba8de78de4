"""Errors a user can act on: each names the file and, where it can, the line, element or field."""

from __future__ import annotations


class VisionLensError(Exception):
    """Base class so callers (CLI, app) can show our errors plainly and let real bugs surface."""


class IngestError(VisionLensError):
    """Bad input. ``str()`` reads ``file:location: message`` so it points straight at the problem."""

    def __init__(self, message: str, file: str | None = None, location: str | None = None):
        self.message = message
        self.file = file
        self.location = location
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ":".join(p for p in (self.file, self.location) if p)
        return f"{where}: {self.message}" if where else self.message


class DatasetExistsError(VisionLensError):
    pass


class DatasetNotFoundError(VisionLensError):
    pass


class StoreLockedError(VisionLensError):
    """Another process holds a store: DuckDB and the embedded Qdrant engine each allow one process per file."""


class FilterError(VisionLensError):
    """A filter names a field or value the dataset does not have."""


class FieldNameError(VisionLensError):
    """A field name that would share or hide another field (letter case, a built-in, an evaluation's)."""


class JobCancelled(VisionLensError):
    """A user cancelled a running job; raised from its progress report so the work stops where it is."""


class NotAllowedError(VisionLensError):
    """A path outside the roots the server may read, or an action the caller may not take."""
