"""Format readers and writers, as the plugins declare them (``format_readers`` / ``annotation_writers`` hooks).

The built-in COCO, YOLO and VOC readers register through the same hook as a plugin's (``visionlens/builtin_plugin
.py``), so ``format=`` choices, auto-detection and the lists shown to users all come from here. The registry is
asked afresh on each use: a plugin disabled for failing drops out, and a plugin's ``detect`` that raises is that
plugin's failure, never the end of auto-detection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..errors import IngestError
from .base import FormatReader

__all__ = [
    "READERS",
    "WRITERS",
    "detect_format",
    "detect_predictions_format",
    "format_names",
    "get_reader",
    "get_writer",
    "readers",
    "registered_writers",
]


def _registered(hook: str) -> dict[str, tuple[str, object]]:
    """``{format name: (plugin, object)}``; a later plugin's format of the same name replaces an earlier one."""
    from ..plugins import get_plugins

    out: dict[str, tuple[str, object]] = {}
    for plugin, obj in get_plugins().collect(hook):
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            get_plugins().fail(plugin, f"{hook}()", TypeError(f"{obj!r} has no name"))
            continue
        out[name] = (plugin, obj)
    return out


class _PluginReader:
    """A plugin's reader whose failures are the plugin's: ``detect`` that raises answers no (and disables the
    plugin), ``read`` that raises fails the ingest with an error naming the plugin instead of a traceback."""

    def __init__(self, plugin: str, reader: FormatReader):
        self.plugin, self.reader, self.name = plugin, reader, reader.name

    def __getattr__(self, attr: str) -> object:
        return getattr(self.reader, attr)

    def __repr__(self) -> str:
        return f"<reader {self.name!r} of plugin {self.plugin!r}>"

    def _guard(self, method: str, *args: object) -> bool:
        from ..plugins import get_plugins

        return bool(
            get_plugins().guard(
                self.plugin, f"{self.name}.{method}", getattr(self.reader, method), *args, default=False
            )
        )

    def _run(self, method: str, *args: object) -> object:
        from ..plugins import get_plugins

        return get_plugins().run(self.plugin, f"{self.name}.{method}", getattr(self.reader, method), *args)

    def detect(self, source: str) -> bool:
        return self._guard("detect", source)

    def detect_predictions(self, source: str) -> bool:
        return self._guard("detect_predictions", source)

    def read(self, *args: object) -> object:
        return self._run("read", *args)

    def read_predictions(self, *args: object) -> object:
        return self._run("read_predictions", *args)


def readers() -> dict[str, FormatReader]:
    """Every reader by name, built-ins first (the order auto-detection tries them in)."""
    from ..plugins import BUILTIN

    return {
        name: reader if plugin == BUILTIN else _PluginReader(plugin, reader)  # type: ignore[misc]
        for name, (plugin, reader) in _registered("format_readers").items()
    }


class _PluginWriter:
    """A plugin's writer whose ``write`` raising fails the export with an error naming the plugin (disabled)."""

    def __init__(self, plugin: str, writer: object):
        self.plugin, self.writer, self.name = plugin, writer, writer.name  # type: ignore[attr-defined]

    def __getattr__(self, attr: str) -> object:
        return getattr(self.writer, attr)

    def write(self, *args: object) -> object:
        from ..plugins import get_plugins

        return get_plugins().run(self.plugin, f"{self.name}.write", self.writer.write, *args)  # type: ignore[attr-defined]


def registered_writers() -> dict[str, object]:
    """Every annotation writer (``hookspecs.AnnotationWriter``) by name (not ``writers``: that is the module of the
    built-in writers)."""
    from ..plugins import BUILTIN

    return {
        name: writer if plugin == BUILTIN else _PluginWriter(plugin, writer)
        for name, (plugin, writer) in _registered("annotation_writers").items()
    }


def format_names() -> list[str]:
    return list(readers())


class _Registry(Mapping[str, object]):
    """A live view of one hook's formats, for code that used the old ``READERS`` dict."""

    def __init__(self, hook: str):
        self._hook = hook

    def __getitem__(self, name: str) -> object:
        return (readers() if self._hook == "format_readers" else registered_writers())[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_registered(self._hook))

    def __len__(self) -> int:
        return len(_registered(self._hook))


READERS: Mapping[str, FormatReader] = _Registry("format_readers")  # type: ignore[assignment]
WRITERS: Mapping[str, object] = _Registry("annotation_writers")


def get_reader(name: str) -> FormatReader:
    try:
        return readers()[name]
    except KeyError:
        raise IngestError(f"unknown format {name!r}; known: auto, {', '.join(format_names())}") from None


def get_writer(name: str) -> object:
    found = registered_writers()
    if name not in found:
        raise IngestError(f"unknown export format {name!r}; known: {', '.join(found) or 'none'}")
    return found[name]


def _detecting(method: str, source: str) -> FormatReader | None:
    for reader in readers().values():
        if getattr(reader, method)(source):
            return reader
    return None


def detect_format(source: str) -> FormatReader:
    """First reader whose cheap ``detect`` accepts the source; COCO first since a JSON file is unambiguous."""
    found = _detecting("detect", source)
    if found is not None:
        return found
    raise IngestError(
        "could not tell the format: expected a COCO JSON (or a folder with annotations/*.json), a YOLO folder "
        "(data.yaml or classes.txt) or a VOC folder (Annotations/*.xml, annotations/*.xml or XML files beside the "
        f"images); pass format= to choose (known: {', '.join(format_names())})",
        source,
    )


def detect_predictions_format(source: str) -> FormatReader:
    found = _detecting("detect_predictions", source)
    if found is not None:
        return found
    raise IngestError(
        "could not tell the predictions format: expected a COCO results .json, a folder of YOLO .txt files "
        "(class cx cy w h confidence) or a folder of VOC .xml files with <score>",
        source,
    )
