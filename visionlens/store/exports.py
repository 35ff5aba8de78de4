"""The two reads an export needs beyond ``MetadataStore``'s public ones: labels with their source ids, and polygons.

``Queries.annotations`` leaves polygons out (the grid and the evaluator never draw or read them) and
``Registry.label_ids`` maps names to our ids only; an export must write COCO category ids as the source file had
them and keep segmentation polygons, so both are read here. Functions over a store rather than store methods, so
the export adds no SQL anywhere but this package and changes no class other code composes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .connection import Connection
from .sql import Sql, ident


@dataclass(frozen=True)
class LabelRow:
    """One label of a dataset: our id (0..n-1, the order labels were first seen), its name, and the id the source
    file gave it (a COCO category id, a YOLO class index; None for labels first seen in predictions)."""

    id: int
    name: str
    ext_id: str | None


def label_rows(store: Connection, dataset_id: int) -> list[LabelRow]:
    """Every label of the dataset, ground truth's and those only predictions use, in id order."""
    with store.cursor() as cur:
        rows = cur.execute(
            "SELECT id, name, ext_id FROM labels WHERE dataset_id = ? ORDER BY id", [dataset_id]
        ).fetchall()
    return [LabelRow(int(i), str(n), None if e is None else str(e)) for i, n, e in rows]


def polygons(
    store: Connection, dataset_id: int, sample_ids: Sequence[int] | np.ndarray
) -> dict[int, list[list[float]]]:
    """Segmentation polygons of the boxes of these samples that have one, by annotation id.

    Stored as 32-bit floats; each value comes back as the shortest decimal that reads as the same float32
    (``12.3``, not ``12.300000190734863``), which is what the source file most likely said.
    """
    ids = np.asarray(sample_ids, np.int64)
    if not len(ids):
        return {}
    with store.cursor() as cur:
        name = f"_vl_export_{id(ids)}"
        cur.register(name, pa.table({"id": pa.array(ids)}))
        table = Sql.of(
            f"SELECT a.id, a.polygon FROM annotations a WHERE a.dataset_id = $d AND a.polygon IS NOT NULL "
            f"AND a.sample_id BETWEEN $lo AND $hi AND a.sample_id IN (SELECT id FROM {ident(name)})",
            d=dataset_id,
            lo=int(ids.min()),
            hi=int(ids.max()),
        ).arrow(cur)
        cur.unregister(name)
    out: dict[int, list[list[float]]] = {}
    for ann_id, rings in zip(table["id"].to_pylist(), table["polygon"].to_pylist()):
        out[int(ann_id)] = [[float(str(np.float32(v))) for v in ring] for ring in rings or []]
    return out


def split_counts(store: Connection, dataset_id: int, sample_ids: Sequence[int] | np.ndarray) -> dict[str | None, int]:
    """Samples per split among these samples (None: no split), so a writer can choose its layout before it
    streams the first sample (YOLO's ``data.yaml`` can only name train, val and test)."""
    ids = np.asarray(sample_ids, np.int64)
    if not len(ids):
        return {}
    with store.cursor() as cur:
        name = f"_vl_export_{id(ids)}"
        cur.register(name, pa.table({"id": pa.array(ids)}))
        rows = (
            Sql.of(
                f"SELECT s.split, count(*) FROM samples s WHERE s.dataset_id = $d AND s.id IN (SELECT id FROM {ident(name)}) "
                "GROUP BY s.split ORDER BY s.split NULLS LAST",
                d=dataset_id,
            )
            .run(cur)
            .fetchall()
        )
        cur.unregister(name)
    return {split: int(n) for split, n in rows}
