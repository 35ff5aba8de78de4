"""Format readers. A new format is one new module with a reader class, listed in ``READERS``."""

from __future__ import annotations

from ..errors import IngestError
from .base import FormatReader
from .coco import CocoReader
from .voc import VocReader
from .yolo import YoloReader

READERS: dict[str, FormatReader] = {r.name: r for r in (CocoReader(), YoloReader(), VocReader())}


def get_reader(name: str) -> FormatReader:
    try:
        return READERS[name]
    except KeyError:
        raise IngestError(f"unknown format {name!r}; known: auto, {', '.join(READERS)}") from None


def detect_format(source: str) -> FormatReader:
    """First reader whose cheap ``detect`` accepts the source; COCO first since a JSON file is unambiguous."""
    for reader in READERS.values():
        if reader.detect(source):
            return reader
    raise IngestError(
        "could not tell the format: expected a COCO JSON (or a folder with annotations/*.json), a YOLO folder "
        "(data.yaml or classes.txt) or a VOC folder (Annotations/*.xml, annotations/*.xml or XML files beside the "
        "images); pass format= to choose",
        source,
    )


def detect_predictions_format(source: str) -> FormatReader:
    for reader in READERS.values():
        if reader.detect_predictions(source):
            return reader
    raise IngestError(
        "could not tell the predictions format: expected a COCO results .json, a folder of YOLO .txt files "
        "(class cx cy w h confidence) or a folder of VOC .xml files with <score>",
        source,
    )
