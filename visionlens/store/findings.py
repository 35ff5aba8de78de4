"""Stored insights: findings with their members, image hashes, and the per-object rows the analyses read.

A finding belongs to a run (``slices:yolo``, ``label_mistakes``, ...); re-running replaces exactly that run's
findings and the fields it owns. Members (sample ids, annotation ids, an optional per-member score) make any
finding a filter: ``Filters(finding=<id>)`` compiles to a join on them, so a cluster or a duplicate group is as
shareable by link as a field condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .kinds import NUMERIC
from .registry import Registry, check_field_names
from .schema import allocate
from .sql import Sql, first, ident
from .writes import to_json

FINDING_COLUMNS = (
    "id",
    "run",
    "kind",
    "model",
    "rank",
    "title",
    "description",
    "definition",
    "score",
    "evidence",
    "filters",
    "detail",
    "n_samples",
    "n_objects",
    "created_at",
)


def run_owner(run: str) -> str:
    """The registry owner of the fields a run adds (kept apart from evaluation keys by a prefix)."""
    return f"insights:{run}"


class Findings(Registry):
    def replace_findings(
        self,
        dataset_id: int,
        run: str,
        findings: Sequence[dict[str, Any]],
        members: Sequence[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]],
        sample_fields: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> list[int]:
        """Replace run ``run`` of a dataset; returns the new findings' ids, in the order given.

        ``findings``: dicts with kind, model, title, description, definition, score, evidence, filters (JSON
        text or None), detail, and n_samples when the members do not say it (a finding defined by a filter). ``members[i]``: (sample_ids, ann_ids or None, scores or None) of finding i.
        ``sample_fields``: numeric per-sample fields the run owns, name -> (sample_ids, values), e.g. the highest
        label-mistake score of each image, so the grid can filter and sort by it.
        """
        if len(members) != len(findings):
            raise ValueError("one members entry per finding")
        sample_fields = sample_fields or {}
        with self.transaction() as cur:
            self._delete_run(cur, dataset_id, run)
            check_field_names(list(sample_fields), self._field_names(cur, dataset_id), [], f"insights run {run!r}")
            first_id = allocate(cur, "findings", max(len(findings), 1))
            ids = list(range(first_id, first_id + len(findings)))
            for rank, (fid, f, (sids, aids, scores)) in enumerate(zip(ids, findings, members, strict=True)):
                sids = np.asarray(sids, np.int64)
                n_obj = 0 if aids is None else int(np.count_nonzero(np.asarray(aids) >= 0))
                cur.execute(
                    "INSERT INTO findings (dataset_id, id, run, kind, model, rank, title, description, definition, "
                    "score, evidence, filters, detail, n_samples, n_objects) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        dataset_id,
                        fid,
                        run,
                        f["kind"],
                        f.get("model"),
                        rank,
                        f["title"],
                        f.get("description", ""),
                        f.get("definition", ""),
                        float(f["score"]),
                        to_json(f.get("evidence") or {}),
                        f.get("filters"),
                        to_json(f.get("detail") or {}),
                        int(f.get("n_samples", len(np.unique(sids)))),
                        n_obj,
                    ],
                )
                self._insert_members(cur, dataset_id, fid, sids, aids, scores)
            cur.execute("INSERT INTO insight_runs (dataset_id, run) VALUES (?, ?)", [dataset_id, run])
            for name, (sids, values) in sample_fields.items():
                column = self._add_sample_field(cur, dataset_id, name, NUMERIC, owner=run_owner(run))
                cur.register(
                    "_vl_field",
                    pa.table(
                        {"id": pa.array(np.asarray(sids, np.int64)), "v": pa.array(np.asarray(values, np.float64))}
                    ),
                )
                cur.execute(
                    f"UPDATE samples SET {ident(column)} = f.v FROM _vl_field f "
                    "WHERE samples.id = f.id AND samples.dataset_id = ?",
                    [dataset_id],
                )
                cur.unregister("_vl_field")
        return ids

    def _insert_members(
        self,
        cur: Any,
        dataset_id: int,
        finding_id: int,
        sids: np.ndarray,
        aids: np.ndarray | None,
        scores: np.ndarray | None,
    ) -> None:
        n = len(sids)
        if n == 0:
            return
        table = pa.table(
            {
                "dataset_id": pa.array(np.full(n, dataset_id, np.int32)),
                "finding_id": pa.array(np.full(n, finding_id, np.int64)),
                "sample_id": pa.array(sids),
                "ann_id": pa.array(np.asarray(aids, np.int64)) if aids is not None else pa.nulls(n, pa.int64()),
                "score": pa.array(np.asarray(scores, np.float64)) if scores is not None else pa.nulls(n, pa.float64()),
            }
        )
        name = self._temp_name()
        cur.register(name, table)
        cur.execute(f"INSERT INTO finding_members SELECT * FROM {ident(name)}")
        cur.unregister(name)

    def _delete_run(self, cur: Any, dataset_id: int, run: str) -> None:
        cur.execute(
            "DELETE FROM finding_members WHERE dataset_id = ? AND finding_id IN "
            "(SELECT id FROM findings WHERE dataset_id = ? AND run = ?)",
            [dataset_id, dataset_id, run],
        )
        cur.execute("DELETE FROM findings WHERE dataset_id = ? AND run = ?", [dataset_id, run])
        cur.execute("DELETE FROM insight_runs WHERE dataset_id = ? AND run = ?", [dataset_id, run])
        self._drop_fields(cur, Sql.of("dataset_id = $d AND owner = $o", d=dataset_id, o=run_owner(run)))

    def delete_findings(self, dataset_id: int, run: str) -> None:
        with self.transaction() as cur:
            self._delete_run(cur, dataset_id, run)

    def findings(
        self, dataset_id: int, kind: str | None = None, run: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Findings best first within each kind (rank is the order the run gave them)."""
        import orjson

        sql = Sql.of(f"SELECT {', '.join(FINDING_COLUMNS)} FROM findings WHERE dataset_id = $d", d=dataset_id)
        if kind is not None:
            sql += Sql.of(" AND kind = $k", k=kind)
        if run is not None:
            sql += Sql.of(" AND run = $r", r=run)
        sql += " ORDER BY kind, score DESC, rank"
        if limit is not None:
            sql += Sql.of(" LIMIT $n", n=int(limit))
        with self.cursor() as cur:
            rows = sql.run(cur).fetchall()
        out = []
        for r in rows:
            d = dict(zip(FINDING_COLUMNS, r))
            for key in ("evidence", "detail"):
                d[key] = orjson.loads(d[key]) if d[key] else {}
            out.append(d)
        return out

    def finding(self, dataset_id: int, finding_id: int) -> dict[str, Any] | None:
        import orjson

        with self.cursor() as cur:
            row = Sql.of(
                f"SELECT {', '.join(FINDING_COLUMNS)} FROM findings WHERE dataset_id = $d AND id = $i",
                d=dataset_id,
                i=int(finding_id),
            ).first(cur)
        if row is None:
            return None
        d = dict(zip(FINDING_COLUMNS, row))
        for key in ("evidence", "detail"):
            d[key] = orjson.loads(d[key]) if d[key] else {}
        return d

    def finding_members(self, dataset_id: int, finding_id: int) -> pa.Table:
        """(sample_id, ann_id, score) rows of one finding."""
        with self.cursor() as cur:
            return Sql.of(
                "SELECT sample_id, ann_id, score FROM finding_members WHERE dataset_id = $d "
                "AND finding_id = $f ORDER BY score DESC NULLS LAST, sample_id",
                d=dataset_id,
                f=int(finding_id),
            ).arrow(cur)

    def insight_runs(self, dataset_id: int) -> list[tuple[str, Any]]:
        with self.cursor() as cur:
            return [
                tuple(r)
                for r in cur.execute(
                    "SELECT run, created_at FROM insight_runs WHERE dataset_id = ? ORDER BY run", [dataset_id]
                ).fetchall()
            ]

    # -- inputs of the analyses ------------------------------------------------------------------------------

    def evaluation_objects(self, dataset_id: int, key: str) -> pa.Table:
        """Every evaluated object of one evaluation with its box, label, score and outcome.

        Columns: ann_id, sample_id, is_pred, status (1 tp, 2 fp, 3 fn, 4 ignored), error (FP type: 1
        localization, 2 confusion, 3 duplicate, 4 background), match_id, iou, label, x, y, w, h, area,
        confidence, iscrowd, ext_id (the annotation's id in the source file, if it had one).
        """
        with self.cursor() as cur:
            return Sql.of(
                """SELECT e.ann_id, e.sample_id, e.is_pred, e.status, e.error, e.match_id, e.iou, l.name AS label,
                          a.x, a.y, a.w, a.h, a.area, a.confidence, a.iscrowd, a.ext_id
                   FROM eval_objects e JOIN annotations a ON a.id = e.ann_id AND a.dataset_id = e.dataset_id
                   JOIN labels l ON l.dataset_id = a.dataset_id AND l.id = a.label_id
                   WHERE e.dataset_id = $d AND e.eval_key = $key ORDER BY e.sample_id, e.ann_id""",
                d=dataset_id,
                key=key,
            ).arrow(cur)

    def write_image_hashes(self, dataset_id: int, sample_ids: np.ndarray, hashes: np.ndarray, method: str) -> None:
        """Perceptual hashes (64-bit) of images, replacing earlier ones of the same samples and method."""
        table = pa.table(
            {
                "dataset_id": pa.array(np.full(len(sample_ids), dataset_id, np.int32)),
                "sample_id": pa.array(np.asarray(sample_ids, np.int64)),
                "method": pa.array([method] * len(sample_ids), pa.string()),
                "hash": pa.array(np.asarray(hashes, np.uint64)),
            }
        )
        with self.transaction() as cur:
            name = self._temp_name()
            cur.register(name, table)
            cur.execute(
                f"DELETE FROM image_hashes WHERE dataset_id = ? AND method = ? AND sample_id IN "
                f"(SELECT sample_id FROM {ident(name)})",
                [dataset_id, method],
            )
            cur.execute(f"INSERT INTO image_hashes SELECT * FROM {ident(name)}")
            cur.unregister(name)

    def image_hashes(self, dataset_id: int, method: str) -> tuple[np.ndarray, np.ndarray]:
        """(sample_ids, uint64 hashes) of the dataset's hashed images, by sample id."""
        with self.cursor() as cur:
            res = cur.execute(
                "SELECT h.sample_id, h.hash FROM image_hashes h JOIN samples s ON s.id = h.sample_id "
                "WHERE h.dataset_id = ? AND h.method = ? ORDER BY h.sample_id",
                [dataset_id, method],
            ).fetchnumpy()
        return np.asarray(res["sample_id"], np.int64), np.asarray(res["hash"], np.uint64)

    def finding_count(self, dataset_id: int) -> int:
        with self.cursor() as cur:
            return int(first(cur.execute("SELECT count(*) FROM findings WHERE dataset_id = ?", [dataset_id]))[0])
