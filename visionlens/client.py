"""The typed client of the HTTP API, and ``connect()``: the one way the CLI and the Python API reach a database.

When an app owns the database (its owner record names a live server), ``connect()`` returns a ``Client`` that
talks to it; otherwise a ``Local`` backend that opens the file itself. Both offer the same methods with the same
plain-data results (``server.operations`` computes them on either side), so ``visionlens list`` prints the same
table beside a running app as without one. Long operations (ingest, predictions, evaluation, embeddings,
insights, deletion) run as jobs on the server; the client follows them, reports their progress to the same
``progress(step, done, total)`` callback the local path uses, and cancels the job if it is interrupted.

    from visionlens.client import Client
    api = Client("http://127.0.0.1:5006", token="...")   # or Client.from_owner() beside the database
    api.list_datasets()
    api.samples("coco", filters={"fields": [{"field": "split", "values": ["val"]}]}, limit=10)
    job = api.evaluate("coco", "yolo", wait=False); api.wait(job["id"])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from .errors import (
    DatasetExistsError,
    DatasetNotFoundError,
    JobCancelled,
    NotAllowedError,
    StoreLockedError,
    VisionLensError,
)
from .formats.base import ProgressCallback, no_progress
from .query import Filters, Sort

__all__ = ["Backend", "Client", "Local", "connect", "RemoteDataset"]

Json = dict[str, Any]


class Backend(Protocol):
    """What the CLI and the Python API need, whichever side of the API they are on."""

    def list_datasets(self) -> list[Json]: ...
    def dataset_info(self, name: str) -> Json: ...
    def ingest(
        self,
        path: str,
        name: str,
        format: str = "auto",
        images: str | None = None,
        predictions: dict[str, str] | None = None,
        replace: bool = False,
        progress: ProgressCallback = no_progress,
    ) -> Json: ...
    def add_predictions(
        self,
        name: str,
        model: str,
        path: str,
        format: str = "auto",
        replace: bool = False,
        progress: ProgressCallback = no_progress,
    ) -> Json: ...
    def delete(self, name: str, progress: ProgressCallback = no_progress) -> Json: ...
    def samples(self, name: str, filters: Any = None, sort: Any = None, offset: int = 0, limit: int = 100) -> Json: ...
    def annotations(
        self, name: str, sample_ids: list[int], sources: list[str] | None = None, evaluation: str | None = None
    ) -> Json: ...
    def evaluate(
        self,
        name: str,
        model: str,
        iou: float = 0.5,
        class_agnostic: bool = False,
        progress: ProgressCallback = no_progress,
    ) -> Json: ...
    def metrics(
        self, name: str, model: str, filters: Any = None, iou: float = 0.5, class_agnostic: bool = False
    ) -> Json: ...
    def evaluations(self, name: str) -> list[Json]: ...
    def embed(
        self,
        name: str,
        embedder: str = "builtin",
        weights: str | None = None,
        project: str = "both",
        batch_size: int = 64,
        workers: int = 2,
        progress: ProgressCallback = no_progress,
        dask_scheduler: str | None = None,
    ) -> Json: ...
    def thumbnails(
        self,
        name: str,
        size: int | None = None,
        workers: int = 2,
        progress: ProgressCallback = no_progress,
        dask_scheduler: str | None = None,
    ) -> Json: ...
    def similar(
        self,
        name: str,
        sample_id: int | None = None,
        text: str | None = None,
        k: int = 50,
        filters: Any = None,
        collection: str | None = None,
    ) -> Json: ...
    def insights(
        self,
        name: str,
        models: list[str] | None = None,
        kinds: list[str] | None = None,
        progress: ProgressCallback = no_progress,
    ) -> Json: ...
    def findings(self, name: str) -> Json: ...
    def tag(
        self,
        name: str,
        tags: list[str] | str,
        filters: Any = None,
        sample_ids: list[int] | None = None,
        remove: bool = False,
        objects: Any = False,
        ann_ids: list[int] | None = None,
    ) -> Json: ...
    def tag_counts(self, name: str, filters: Any = None) -> Json: ...
    def views(self, name: str) -> list[Json]: ...
    def view(self, name: str, view: str) -> Json: ...
    def save_view(self, name: str, view: Any, replace: bool = False, user: str | None = None) -> Json: ...
    def rename_view(self, name: str, view: str, new_name: str) -> Json: ...
    def delete_view(self, name: str, view: str) -> Json: ...
    def export(
        self,
        name: str,
        out: str,
        format: str = "coco",
        filters: Any = None,
        models: list[str] | None = None,
        images: str = "copy",
        progress: ProgressCallback = no_progress,
    ) -> Json: ...


class Local:
    """The operations on a store opened in this process (no app owns the database)."""

    remote = False

    def __init__(self, store: Any = None):
        from .store.metadata import open_store

        self.store = store or open_store()

    def __getattr__(self, name: str) -> Any:
        from .server import operations

        fn = getattr(operations, name, None)
        if fn is None or name.startswith("_") or name not in operations.__all__:
            raise AttributeError(name)
        return lambda *args, **kwargs: fn(self.store, *args, **kwargs)


def _filters_json(filters: Any) -> Any:
    if filters is None:
        return {}
    if isinstance(filters, Filters | Sort):
        return filters.model_dump(mode="json", exclude_defaults=True)
    return filters


def _abs(path: str | os.PathLike[str] | None) -> str | None:
    """A path as the server must read it: absolute from the caller's folder (URIs as given)."""
    if path is None:
        return None
    s = str(path)
    return s if "://" in s else str(Path(s).expanduser().resolve())


def _ds(name: str, tail: str = "") -> str:
    """A dataset's API path; the name is data, quoted whole ("/" and "?" included)."""
    from urllib.parse import quote

    return f"/datasets/{quote(name, safe='')}{tail}"


def _view(name: str, view: str) -> str:
    """A saved view's API path; its name is data too, quoted whole."""
    from urllib.parse import quote

    return _ds(name, f"/views/{quote(view, safe='')}")


class Client:
    """Typed calls of the HTTP API; the same results as ``Local``, errors raised as the same exception types."""

    remote = True

    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0, poll_s: float = 1.0):
        import httpx

        from .server.api import API_PREFIX

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url + API_PREFIX, headers=headers, timeout=timeout)
        self.poll_s = poll_s

    @classmethod
    def from_owner(cls, database: str | os.PathLike[str] | None = None) -> Client:
        """The client of the live app that owns ``database`` (default: this home's database)."""
        from .config import get_settings
        from .server.owner import live_owner

        found = live_owner(database or get_settings().database)
        if found is None:
            raise VisionLensError("no running app owns this database (start one with `make serve`)")
        return cls(found.url, found.token)

    def __repr__(self) -> str:
        return f"<visionlens.Client {self.url}>"

    def close(self) -> None:
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:

        import httpx

        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise VisionLensError(f"the VisionLens app at {self.url} did not answer: {e}") from None
        try:
            body = r.json()
        except ValueError:
            body = {"error": r.text[:500]}
        if r.status_code >= 400:
            message = body.get("error", r.reason_phrase) if isinstance(body, dict) else r.reason_phrase
            raise _ERRORS.get(r.status_code, VisionLensError)(message)
        return body

    def _job(self, path: str, body: Json, wait: bool, progress: ProgressCallback) -> Json:
        job = self._request("POST", path, json=body)["job"]
        return self.wait(job["id"], progress) if wait else job

    def wait(self, job_id: str, progress: ProgressCallback = no_progress) -> Any:
        """Follow a job to its end, reporting progress; its result, or its error raised. Ctrl-C cancels it."""
        seen: dict[str, tuple[int, int]] = {}
        try:
            while True:
                job = self.job(job_id, wait=self.poll_s)
                for step, s in job["steps"].items():
                    if seen.get(step) != (s["done"], s["total"]):
                        seen[step] = (s["done"], s["total"])
                        progress(step, s["done"], s["total"])
                if job["state"] == "done":
                    return job["result"]
                if job["state"] == "cancelled":
                    raise JobCancelled(job["error"] or f"job {job_id} was cancelled")
                if job["state"] == "failed":
                    raise VisionLensError(job["error"] or f"job {job_id} failed")
        except KeyboardInterrupt:
            self.cancel(job_id)
            raise

    # --- jobs -----------------------------------------------------------------------------------------------

    def jobs(self) -> list[Json]:
        return self._request("GET", "/jobs")["jobs"]

    def job(self, job_id: str, wait: float = 0) -> Json:
        return self._request("GET", f"/jobs/{job_id}", params={"wait": wait} if wait else None)["job"]

    def cancel(self, job_id: str) -> bool:
        try:
            return bool(self._request("DELETE", f"/jobs/{job_id}")["cancelled"])
        except VisionLensError:
            return False

    # --- the operations -------------------------------------------------------------------------------------

    def health(self) -> Json:
        return self._request("GET", "/health")

    def list_datasets(self) -> list[Json]:
        return self._request("GET", "/datasets")

    def dataset_info(self, name: str) -> Json:
        return self._request("GET", _ds(name, ""))

    def ingest(
        self,
        path: str,
        name: str,
        format: str = "auto",
        images: str | None = None,
        predictions: dict[str, str] | None = None,
        replace: bool = False,
        progress: ProgressCallback = no_progress,
        wait: bool = True,
    ) -> Json:
        body = {
            "path": _abs(path),
            "name": name,
            "format": format,
            "images": _abs(images),
            "predictions": {m: _abs(p) for m, p in (predictions or {}).items()},
            "replace": replace,
        }
        return self._job("/datasets", body, wait, progress)

    def add_predictions(
        self,
        name: str,
        model: str,
        path: str,
        format: str = "auto",
        replace: bool = False,
        progress: ProgressCallback = no_progress,
        wait: bool = True,
    ) -> Json:
        body = {"model": model, "path": _abs(path), "format": format, "replace": replace}
        return self._job(_ds(name, "/predictions"), body, wait, progress)

    def delete(self, name: str, progress: ProgressCallback = no_progress, wait: bool = True) -> Json:
        job = self._request("DELETE", _ds(name, ""))["job"]
        return self.wait(job["id"], progress) if wait else job

    def samples(self, name: str, filters: Any = None, sort: Any = None, offset: int = 0, limit: int = 100) -> Json:
        body = {"filters": _filters_json(filters), "offset": offset, "limit": limit}
        if sort is not None:
            body["sort"] = _filters_json(sort)
        return self._request("POST", _ds(name, "/samples"), json=body)

    def annotations(
        self, name: str, sample_ids: list[int], sources: list[str] | None = None, evaluation: str | None = None
    ) -> Json:
        body = {"sample_ids": [int(i) for i in sample_ids], "sources": sources, "evaluation": evaluation}
        return self._request("POST", _ds(name, "/annotations"), json=body)

    def evaluate(
        self,
        name: str,
        model: str,
        iou: float = 0.5,
        class_agnostic: bool = False,
        progress: ProgressCallback = no_progress,
        wait: bool = True,
    ) -> Json:
        body = {"model": model, "iou": iou, "class_agnostic": class_agnostic}
        return self._job(_ds(name, "/evaluate"), body, wait, progress)

    def metrics(
        self, name: str, model: str, filters: Any = None, iou: float = 0.5, class_agnostic: bool = False
    ) -> Json:
        body = {"model": model, "filters": _filters_json(filters), "iou": iou, "class_agnostic": class_agnostic}
        return self._request("POST", _ds(name, "/metrics"), json=body)

    def evaluations(self, name: str) -> list[Json]:
        return self._request("GET", _ds(name, "/evaluations"))

    def embed(
        self,
        name: str,
        embedder: str = "builtin",
        weights: str | None = None,
        project: str = "both",
        batch_size: int = 64,
        workers: int = 2,
        progress: ProgressCallback = no_progress,
        dask_scheduler: str | None = None,
        wait: bool = True,
    ) -> Json:
        body = {
            "embedder": embedder,
            "weights": _abs(weights),
            "project": project,
            "batch_size": batch_size,
            "workers": workers,
            "dask_scheduler": dask_scheduler,
        }
        return self._job(_ds(name, "/embed"), body, wait, progress)

    def thumbnails(
        self,
        name: str,
        size: int | None = None,
        workers: int = 2,
        progress: ProgressCallback = no_progress,
        dask_scheduler: str | None = None,
        wait: bool = True,
    ) -> Json:
        body = {"size": size, "workers": workers, "dask_scheduler": dask_scheduler}
        return self._job(_ds(name, "/thumbnails"), body, wait, progress)

    def similar(
        self,
        name: str,
        sample_id: int | None = None,
        text: str | None = None,
        k: int = 50,
        filters: Any = None,
        collection: str | None = None,
    ) -> Json:
        body = {
            "sample_id": sample_id,
            "text": text,
            "k": k,
            "filters": _filters_json(filters),
            "collection": collection,
        }
        return self._request("POST", _ds(name, "/similar"), json=body)

    def insights(
        self,
        name: str,
        models: list[str] | None = None,
        kinds: list[str] | None = None,
        progress: ProgressCallback = no_progress,
        wait: bool = True,
    ) -> Json:
        return self._job(_ds(name, "/insights"), {"models": models, "kinds": kinds}, wait, progress)

    def findings(self, name: str) -> Json:
        return self._request("GET", _ds(name, "/insights"))

    def tag(
        self,
        name: str,
        tags: list[str] | str,
        filters: Any = None,
        sample_ids: list[int] | None = None,
        remove: bool = False,
        objects: Any = False,
        ann_ids: list[int] | None = None,
    ) -> Json:
        """Tags on samples (``filters`` and/or ``sample_ids``), or on boxes (``objects``: true or a LabelFilter;
        ``ann_ids``); ``{"target", "tags", "changed"}``."""
        body = {
            "action": "remove" if remove else "add",
            "tags": [tags] if isinstance(tags, str) else list(tags),
            "filters": None if filters is None else _filters_json(filters),
            "sample_ids": None if sample_ids is None else [int(i) for i in sample_ids],
            "objects": _objects_json(objects),
            "ann_ids": None if ann_ids is None else [int(i) for i in ann_ids],
        }
        return self._request("POST", _ds(name, "/tags"), json=body)

    def tag_counts(self, name: str, filters: Any = None) -> Json:
        import orjson

        params = None if filters is None else {"filters": orjson.dumps(_filters_json(filters)).decode()}
        return self._request("GET", _ds(name, "/tags"), params=params)

    def views(self, name: str) -> list[Json]:
        return self._request("GET", _ds(name, "/views"))

    def view(self, name: str, view: str) -> Json:
        return self._request("GET", _view(name, view))

    def save_view(self, name: str, view: Any, replace: bool = False, user: str | None = None) -> Json:
        """``view``: a ``SavedView`` or its dict; the server records the caller's login (or "token") as user."""
        doc = view.model_dump(mode="json") if hasattr(view, "model_dump") else dict(view)
        keep = ("name", "filters", "selection", "sort", "sources")
        body = {k: doc[k] for k in keep if doc.get(k) is not None}
        return self._request("POST", _ds(name, "/views"), json={**body, "replace": replace})

    def rename_view(self, name: str, view: str, new_name: str) -> Json:
        return self._request("PATCH", _view(name, view), json={"name": new_name})

    def delete_view(self, name: str, view: str) -> Json:
        return self._request("DELETE", _view(name, view))

    def export(
        self,
        name: str,
        out: str,
        format: str = "coco",
        filters: Any = None,
        models: list[str] | None = None,
        images: str = "copy",
        progress: ProgressCallback = no_progress,
        wait: bool = True,
    ) -> Json:
        """The view ``filters`` selects written to the folder ``out`` on the server (inside its allowed roots)."""
        body = {
            "out": _abs(out),
            "format": format,
            "filters": _filters_json(filters),
            "models": models,
            "images": images,
        }
        return self._job(_ds(name, "/export"), body, wait, progress)


_ERRORS: dict[int, type[VisionLensError]] = {
    401: NotAllowedError,
    403: NotAllowedError,
    404: DatasetNotFoundError,
    409: DatasetExistsError,
}


def connect(database: str | os.PathLike[str] | None = None) -> Client | Local:
    """A ``Client`` of the running app that owns the database, else the database opened here."""
    from .config import get_settings
    from .server.owner import live_owner
    from .store.metadata import open_store

    db = database or get_settings().database
    found = live_owner(db)
    if found is not None:
        return Client(found.url, found.token)
    try:
        return Local(open_store(db))
    except StoreLockedError as e:
        raise StoreLockedError(
            f"{e} No running VisionLens app answers for it (an app started with `panel serve apps/browse.py` or "
            "`make serve` records itself beside the database once its first page is open)."
        ) from None


class RemoteDataset:
    """``vl.load(name)`` while an app owns the database: the usual questions, answered by the app."""

    def __init__(self, client: Client, info: Json):
        self.client, self.info = client, info

    name = property(lambda self: self.info["name"])
    id = property(lambda self: self.info["id"])
    root = property(lambda self: self.info["root"])
    format = property(lambda self: self.info["format"])

    def __repr__(self) -> str:
        return f"<Dataset {self.name!r} via {self.client.url}: {self.count()} samples, models {self.models()}>"

    def count(self, filters: Any = None) -> int:
        return int(self.client.samples(self.name, filters, limit=0)["count"])

    def samples(
        self,
        filters: Any = None,
        limit: int = 100,
        offset: int = 0,
        sort_by: str = "id",
        descending: bool = False,
        as_: str = "pandas",
    ) -> Any:
        import pyarrow as pa

        rows = self.page_rows(filters, limit, offset, sort_by, descending)[0]
        table = pa.Table.from_pylist(rows)
        return table.to_pandas() if as_ == "pandas" else table

    def page(
        self, filters: Any = None, limit: int = 100, offset: int = 0, sort_by: str = "id", descending: bool = False
    ) -> tuple[Any, int]:
        import pandas as pd

        rows, total = self.page_rows(filters, limit, offset, sort_by, descending)
        return pd.DataFrame(rows), total

    def page_rows(
        self, filters: Any, limit: int, offset: int, sort_by: str, descending: bool
    ) -> tuple[list[Json], int]:
        sort = {"field": sort_by, "descending": descending}
        out = self.client.samples(self.name, filters, sort, offset, limit)
        return out["rows"], int(out["count"])

    def annotations(self, sample_ids: Any, sources: list[str] | None = None, evaluation: str | None = None) -> Any:
        import numpy as np
        import pandas as pd

        ids = [int(i) for i in np.atleast_1d(np.asarray(sample_ids, np.int64))]
        return pd.DataFrame(self.client.annotations(self.name, ids, sources, evaluation)["rows"])

    def labels(self) -> list[str]:
        return list(self.client.dataset_info(self.name)["label_names"])

    def models(self) -> list[str]:
        return list(self.client.dataset_info(self.name)["models"])

    def summary(self) -> Json:
        return self.client.dataset_info(self.name)

    def add_predictions(
        self, model: str, path: str, format: str = "auto", replace: bool = False, progress: Any = no_progress
    ) -> int:
        return int(self.client.add_predictions(self.name, model, path, format, replace, progress)["predictions"])

    def evaluate(self, model: str, iou: float = 0.5, class_agnostic: bool = False, progress: Any = no_progress) -> Any:
        return _metrics(self.client.evaluate(self.name, model, iou, class_agnostic, progress))

    def metrics(self, model: str, filters: Any = None, iou: float = 0.5, class_agnostic: bool = False) -> Any:
        return _metrics(self.client.metrics(self.name, model, filters, iou, class_agnostic))

    def evaluations(self) -> list[Json]:
        return self.client.evaluations(self.name)

    def insights(
        self, model: Any = None, kinds: list[str] | None = None, compute: bool = True, progress: Any = no_progress
    ) -> list[Json]:
        """Findings as the API sends them (``{"kind", "title", "score", "filters", "files", ...}``)."""
        if not compute:
            found = self.client.findings(self.name)["findings"]
            return [f for f in found if kinds is None or f["kind"] in kinds]
        models = [model] if isinstance(model, str) else model
        return self.client.insights(self.name, models, kinds, progress)["findings"]

    # -- tags and saved views: the same methods and results as ``Dataset`` ----------------------------------------

    def tag(self, tags: Any, filters: Any = None, sample_ids: Any = None) -> int:
        return int(self.client.tag(self.name, tags, _opt_filters(filters), _ids(sample_ids))["changed"])

    def untag(self, tags: Any, filters: Any = None, sample_ids: Any = None) -> int:
        return int(self.client.tag(self.name, tags, _opt_filters(filters), _ids(sample_ids), remove=True)["changed"])

    def tag_objects(self, tags: Any, ann_ids: Any = None, filters: Any = None, objects: Any = None) -> int:
        out = self.client.tag(self.name, tags, _opt_filters(filters), None, False, _objects(objects), _ids(ann_ids))
        return int(out["changed"])

    def untag_objects(self, tags: Any, ann_ids: Any = None, filters: Any = None, objects: Any = None) -> int:
        out = self.client.tag(self.name, tags, _opt_filters(filters), None, True, _objects(objects), _ids(ann_ids))
        return int(out["changed"])

    def tag_counts(self, filters: Any = None) -> dict[str, dict[str, int]]:
        return self.client.tag_counts(self.name, _opt_filters(filters))

    def save_view(
        self,
        name: str,
        filters: Any = None,
        selection: Any = None,
        sort: Any = None,
        sources: list[str] | None = None,
        replace: bool = False,
    ) -> Any:
        from .dataset import as_sort
        from .query import SavedView, as_filters

        view = SavedView(
            name=name,
            filters=as_filters(filters),
            selection=_ids(selection),
            sort=as_sort(sort),
            sources=None if sources is None else tuple(sources),
        )
        return SavedView.model_validate(self.client.save_view(self.name, view, replace))

    def views(self) -> list[Any]:
        from .query import SavedView

        return [SavedView.model_validate(v) for v in self.client.views(self.name)]

    def view(self, name: str) -> Any:
        from .query import SavedView

        return SavedView.model_validate(self.client.view(self.name, name))

    def rename_view(self, name: str, new_name: str) -> Any:
        from .query import SavedView

        return SavedView.model_validate(self.client.rename_view(self.name, name, new_name))

    def delete_view(self, name: str) -> None:
        self.client.delete_view(self.name, name)


def _ids(values: Any) -> list[int] | None:
    import numpy as np

    return None if values is None else [int(i) for i in np.asarray(values, np.int64).ravel()]


def _opt_filters(value: Any) -> Any:
    """None stays None (a tag call must name its samples); short forms are read as ``Dataset`` reads them."""
    from .query import as_filters

    return None if value is None else as_filters(value)


def _objects(value: Any) -> Any:
    """``Dataset.tag_objects``'s ``objects`` (None: every box of the samples named) as ``Client.tag`` takes it."""
    return True if value is None else value


def _objects_json(value: Any) -> Any:
    """``objects`` as the API's field: false (tag samples), true (every box) or a LabelFilter's JSON."""
    if value is None or isinstance(value, bool):
        return bool(value)
    return value.model_dump(mode="json", exclude_defaults=True) if hasattr(value, "model_dump") else value


def _metrics(doc: Json) -> Any:
    """The API's metrics as the ``Metrics`` object the local path returns."""
    import numpy as np

    from .metrics import Metrics

    fields = {k: doc[k] for k in ("model", "key", "iou", "class_agnostic", "samples", "stats", "per_class", "seconds")}
    confusion = np.asarray(doc["confusion"]) if doc.get("confusion") is not None else None
    return Metrics(**fields, confusion=confusion, confusion_labels=doc.get("confusion_labels", []))
