"""The typed filter model shared by the API, the CLI, the app state and the URL.

It holds no SQL: ``store.metadata`` compiles it, after checking every field name against the dataset's field
registry, and passes every value as a parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Scalar = str | int | float | bool


class Range(BaseModel):
    """Inclusive bounds; ``None`` leaves that side open."""

    model_config = ConfigDict(frozen=True)
    min: float | None = None
    max: float | None = None

    @property
    def is_open(self) -> bool:
        return self.min is None and self.max is None


class FieldFilter(BaseModel):
    """A sample-level condition: ``values`` (any of) for categorical, bool and tag fields, ``range`` for numbers."""

    model_config = ConfigDict(frozen=True)
    field: str
    values: tuple[Scalar | None, ...] | None = None
    range: Range | None = None
    exclude: bool = False


class LabelFilter(BaseModel):
    """Samples having at least ``min_count`` annotations of ``source`` matching every given condition.

    ``exclude`` turns it into "samples with no such annotation" (e.g. images where model X found no person).
    ``status`` keeps boxes with that outcome in ``evaluation`` (default: the evaluation named after ``source``),
    e.g. false positives of model X, or ground truth that model X missed (source ground_truth, status fn).
    ``tags`` keeps boxes carrying any of these object tags (``Dataset.tag_objects``).
    ``fields`` are conditions on object fields (a plugin's computed box measures, ``annotation.<name>`` in
    ``Dataset.fields()``), e.g. ``FieldFilter(field="box sharpness", range=Range(max=20))``.
    """

    model_config = ConfigDict(frozen=True)
    source: str = "ground_truth"
    labels: tuple[str, ...] | None = None
    confidence: Range | None = None
    area: Range | None = None
    min_count: int = Field(default=1, ge=1)
    exclude: bool = False
    status: tuple[Literal["tp", "fp", "fn", "ignored"], ...] | None = None
    evaluation: str | None = None
    tags: tuple[str, ...] | None = None
    fields: tuple[FieldFilter, ...] = ()


class Filters(BaseModel):
    """Everything that narrows a dataset down to the samples a user looks at."""

    model_config = ConfigDict(frozen=True)
    fields: tuple[FieldFilter, ...] = ()
    annotations: tuple[LabelFilter, ...] = ()
    sample_ids: tuple[int, ...] | None = None
    finding: int | None = None
    """Samples of one stored insight (a slice, a cluster, a duplicate group): small enough for a link."""

    @field_validator("sample_ids", mode="before")
    @classmethod
    def _ids_to_tuple(cls, v: Any) -> Any:
        if v is None:
            return None
        return tuple(int(i) for i in v)

    @property
    def is_empty(self) -> bool:
        return not self.fields and not self.annotations and self.sample_ids is None and self.finding is None

    def with_field(self, flt: FieldFilter | None, name: str | None = None) -> Filters:
        """A copy with the condition on one field replaced (or removed when ``flt`` is None)."""
        name = name or (flt.field if flt else None)
        kept = tuple(f for f in self.fields if f.field != name)
        return self.model_copy(update={"fields": kept + ((flt,) if flt else ())})

    def without_field(self, name: str) -> Filters:
        return self.with_field(None, name)

    def to_url(self) -> str:
        """Compact JSON for a query string; lasso selections stay out (they can hold a million ids)."""
        return self.model_copy(update={"sample_ids": None}).model_dump_json(exclude_defaults=True)

    @classmethod
    def from_url(cls, text: str) -> Filters:
        return cls.model_validate_json(text)


class Sort(BaseModel):
    model_config = ConfigDict(frozen=True)
    field: str = "id"
    descending: bool = False


def as_filters(value: Filters | dict[str, Any] | None) -> Filters:
    """Accept the short forms people type in a notebook.

    ``{"split": "val", "width": (0, 640), "annotations": [{"labels": ["car"], "source": "yolo"}]}``: a string or
    list means any-of, a 2-tuple means a numeric range.
    """
    if value is None:
        return Filters()
    if isinstance(value, Filters):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"filters must be a Filters or a dict, not {type(value).__name__}")
    if "fields" in value:
        return Filters.model_validate(value)
    fields: list[FieldFilter] = []
    annotations: list[LabelFilter] = []
    sample_ids = None
    finding = None
    for key, v in value.items():
        if key == "annotations":
            annotations.extend(LabelFilter.model_validate(a) for a in v)
        elif key == "sample_ids":
            sample_ids = v
        elif key == "finding":
            finding = int(v)
        elif isinstance(v, tuple) and len(v) == 2 and all(x is None or isinstance(x, (int, float)) for x in v):
            fields.append(FieldFilter(field=key, range=Range(min=v[0], max=v[1])))
        elif isinstance(v, (list, tuple, set)):
            fields.append(FieldFilter(field=key, values=tuple(v)))
        else:
            fields.append(FieldFilter(field=key, values=(v,)))
    return Filters(fields=tuple(fields), annotations=tuple(annotations), sample_ids=sample_ids, finding=finding)


class SavedView(BaseModel):
    """A named view of one dataset (filters, lasso selection, sort, visible sources), kept so anyone can open it
    again or link to it (``?view=<name>``). The name is data: any text, compared exactly.

    ``selected`` is how many ids the selection holds; a listing leaves the ids themselves out (a lasso can hold a
    million) and says only that.
    """

    model_config = ConfigDict(frozen=True)
    name: str
    filters: Filters = Field(default_factory=Filters)
    selection: tuple[int, ...] | None = None
    sort: Sort = Field(default_factory=Sort)
    sources: tuple[str, ...] | None = None
    """Ground truth and the models drawn on the tiles; None leaves what is drawn as it is."""
    selected: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    user: str | None = None

    @field_validator("selection", mode="before")
    @classmethod
    def _selection_to_tuple(cls, v: Any) -> Any:
        return None if v is None else tuple(int(i) for i in v)

    def effective_filters(self) -> Filters:
        """The filters with the selection applied: what the view shows (``ds.count(view.effective_filters())``)."""
        if self.selection is None:
            return self.filters
        return self.filters.model_copy(update={"sample_ids": self.selection})
