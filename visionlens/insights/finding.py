"""What every analysis returns: a ``Finding`` with evidence, a human definition and a filter the app can apply.

Analyses are plain functions from the store's data to findings; none calls a language model. ``save_run`` stores
one run's findings (replacing that run's earlier ones) and gives each its id.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..query import Filters
from ..store.metadata import MetadataStore

Kind = Literal["slice", "error_pattern", "label_mistake", "near_duplicate"]
KINDS: tuple[Kind, ...] = ("slice", "error_pattern", "label_mistake", "near_duplicate")


class Finding(BaseModel):
    """One insight. ``score`` ranks findings within a kind (higher is more worth a look).

    ``evidence`` holds the numbers behind it (rates with intervals, support, p-values); ``definition`` says in
    words which samples it covers ("camera is cam_3 and hour ≥ 20"); ``filters`` selects them in the app, or,
    when no field condition can (a cluster, a duplicate group), ``sample_ids`` are stored and the app filters by
    the finding's id. ``detail`` holds what a kind adds (a label mistake's box and kind, a duplicate group's
    pairs).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: Kind
    title: str
    score: float
    description: str = ""
    definition: str = ""
    model: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    filters: Filters | None = None
    sample_ids: list[int] = Field(default_factory=list)
    object_ids: list[int] = Field(default_factory=list)
    member_scores: list[float] | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    id: int | None = None
    run: str | None = None

    def app_filters(self) -> Filters:
        """What the app applies when the finding is clicked: its own filter, else its stored members."""
        if self.filters is not None:
            return self.filters
        if self.id is None:
            raise ValueError("an unsaved finding without a filter has nothing the app could apply")
        return Filters(finding=self.id)


def save_run(
    store: MetadataStore,
    dataset_id: int,
    run: str,
    findings: list[Finding],
    sample_fields: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[Finding]:
    """Store ``findings`` as run ``run`` (replacing its earlier findings); returns them with ids set."""
    rows, members = [], []
    for f in findings:
        rows.append(
            {
                "kind": f.kind,
                "model": f.model,
                "title": f.title,
                "description": f.description,
                "definition": f.definition,
                "score": f.score,
                "evidence": f.evidence,
                "detail": f.detail,
                "filters": f.filters.model_dump_json(exclude_defaults=True) if f.filters is not None else None,
            }
        )
        if not f.sample_ids and f.filters is not None:  # the images its filter selects, for every reader to show
            rows[-1]["n_samples"] = store.count(dataset_id, f.filters)
        sids = np.asarray(f.sample_ids, np.int64)
        aids = np.asarray(f.object_ids, np.int64) if f.object_ids else None
        if aids is not None and len(aids) != len(sids):
            # object members carry their sample; a finding on objects lists one sample id per object
            raise ValueError(f"finding {f.title!r}: object_ids and sample_ids must align ({len(aids)} vs {len(sids)})")
        scores = np.asarray(f.member_scores, np.float64) if f.member_scores is not None else None
        members.append((sids, aids, scores))
    ids = store.replace_findings(dataset_id, run, rows, members, sample_fields)
    return [f.model_copy(update={"id": i, "run": run}) for f, i in zip(findings, ids, strict=True)]


def load_findings(
    store: MetadataStore, dataset_id: int, kind: str | None = None, run: str | None = None, with_members: bool = False
) -> list[Finding]:
    """Stored findings, best first within each kind."""
    out = []
    for row in store.findings(dataset_id, kind=kind, run=run):
        f = Finding(
            kind=row["kind"],
            title=row["title"],
            score=row["score"] if row["score"] is not None else 0.0,
            description=row["description"] or "",
            definition=row["definition"] or "",
            model=row["model"],
            evidence=row["evidence"],
            detail=row["detail"],
            id=row["id"],
            run=row["run"],
            filters=Filters.model_validate_json(row["filters"]) if row["filters"] else None,
        )
        if with_members:
            m = store.finding_members(dataset_id, row["id"])
            f.sample_ids = m["sample_id"].to_pylist()
            aids = m["ann_id"].to_pylist()
            f.object_ids = [a for a in aids if a is not None] if any(a is not None for a in aids) else []
            scores = m["score"].to_pylist()
            f.member_scores = scores if any(s is not None for s in scores) else None
        out.append(f)
    return out
