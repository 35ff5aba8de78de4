"""The HTTP API, served by the process that owns the database, on the app's own server and port.

Every route needs the owner's token (``Authorization: Bearer ...``, from the owner record) or, when the server
runs with a login (``--basic-auth``, ``--oauth-*``), a logged-in user's cookie. Requests name datasets and
sample ids, never files to read, except the ingest requests, whose paths must lie in the configured roots
(``roots.check_allowed``). Long work answers ``202`` with a job at once; ``GET /jobs/<id>`` follows it.

    GET    /vl/api/v1/health
    GET    /vl/api/v1/datasets                       POST (ingest: job)
    GET    /vl/api/v1/datasets/<name>                DELETE (job)
    POST   /vl/api/v1/datasets/<name>/predictions    (job)
    GET    /vl/api/v1/datasets/<name>/samples        POST (filters as JSON)
    POST   /vl/api/v1/datasets/<name>/annotations
    POST   /vl/api/v1/datasets/<name>/evaluate       (job)
    POST   /vl/api/v1/datasets/<name>/metrics
    GET    /vl/api/v1/datasets/<name>/evaluations
    POST   /vl/api/v1/datasets/<name>/embed          (job; on a Dask cluster with the dask_scheduler setting)
    POST   /vl/api/v1/datasets/<name>/thumbnails     (job: fill the thumbnail cache)
    POST   /vl/api/v1/datasets/<name>/similar
    GET    /vl/api/v1/datasets/<name>/insights       POST (job)
    GET    /vl/api/v1/datasets/<name>/tags           POST (add or remove tags on samples or boxes)
    GET    /vl/api/v1/datasets/<name>/views          POST (save a view)
    GET    /vl/api/v1/datasets/<name>/views/<view>   PATCH (rename), DELETE
    POST   /vl/api/v1/datasets/<name>/export         (job; the folder must lie in the allowed roots)
    GET    /vl/api/v1/jobs                           GET/DELETE /vl/api/v1/jobs/<id>
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Callable
from typing import Any, Literal

import orjson
from bokeh.server.views.auth_request_handler import AuthRequestHandler
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import DatasetExistsError, DatasetNotFoundError, NotAllowedError, VisionLensError
from ..query import Filters, LabelFilter, Sort
from . import operations as ops
from .jobs import Job, registry
from .roles import TOKEN_USER, can, require
from .roots import check_allowed

__all__ = ["API_PREFIX", "ROUTES", "set_token"]

log = logging.getLogger(__name__)

API_PREFIX = "/vl/api/v1"
MAX_PAGE = 10_000
MAX_WAIT_S = 30.0

_token: list[str] = []


def set_token(token: str) -> None:
    """The secret every API request may present instead of a login; written to the owner record."""
    _token[:] = [token]


def _store() -> Any:
    from ..ui import resources

    return resources.store()


# --- request bodies: unknown keys are refused so a typo is an error, not a silently ignored option -----------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestBody(_Body):
    path: str
    name: str = Field(min_length=1)
    format: str = "auto"
    images: str | None = None
    predictions: dict[str, str] = Field(default_factory=dict)
    replace: bool = False


class PredictionsBody(_Body):
    model: str = Field(min_length=1)
    path: str
    format: str = "auto"
    replace: bool = False


class SamplesBody(_Body):
    filters: Filters = Field(default_factory=Filters)
    sort: Sort = Field(default_factory=Sort)
    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=0, le=MAX_PAGE)


class AnnotationsBody(_Body):
    sample_ids: list[int] = Field(max_length=MAX_PAGE)
    sources: list[str] | None = None
    evaluation: str | None = None


class EvaluateBody(_Body):
    model: str
    iou: float = Field(0.5, gt=0, lt=1)
    class_agnostic: bool = False


class MetricsBody(EvaluateBody):
    filters: Filters = Field(default_factory=Filters)


class EmbedBody(_Body):
    embedder: str = "builtin"
    weights: str | None = None
    project: str = Field("both", pattern="^(both|none|pca|umap)$")
    batch_size: int = Field(64, ge=1, le=4096)
    workers: int = Field(2, ge=0, le=64)
    dask_scheduler: str | None = Field(None, max_length=512)


class ThumbnailsBody(_Body):
    size: int | None = Field(None, ge=16, le=4096)
    workers: int = Field(2, ge=1, le=64)
    dask_scheduler: str | None = Field(None, max_length=512)


def _check_scheduler(user: str | None, scheduler: str | None) -> None:
    """Only an admin may point the server at a Dask scheduler other than its configured one (``none``, this
    process, is always allowed): the server sends work to it and unpickles what comes back, so a scheduler
    someone else runs could run code in this process."""
    from ..dask_jobs import resolve_scheduler

    if scheduler is None or resolve_scheduler(scheduler) in (None, resolve_scheduler(None)):
        return
    if not can(user, "admin"):
        raise NotAllowedError(
            f"only an admin may name a Dask scheduler ({scheduler!r}) other than the server's own "
            "(its VISIONLENS_DASK_SCHEDULER setting)"
        )


class SimilarBody(_Body):
    sample_id: int | None = None
    text: str | None = None
    k: int = Field(50, ge=1, le=1000)
    filters: Filters = Field(default_factory=Filters)
    collection: str | None = None


class InsightsBody(_Body):
    models: list[str] | None = None
    kinds: list[str] | None = None


class TagsBody(_Body):
    """Tags on the samples named by ``filters`` and/or ``sample_ids``; on boxes when ``objects`` (true: every box
    of those samples; a filter: the boxes it matches) or ``ann_ids`` is given."""

    action: Literal["add", "remove"] = "add"
    tags: list[str] = Field(min_length=1, max_length=100)
    filters: Filters | None = None
    sample_ids: list[int] | None = None
    objects: LabelFilter | bool = False
    ann_ids: list[int] | None = None


class SaveViewBody(_Body):
    name: str = Field(min_length=1)
    filters: Filters = Field(default_factory=Filters)
    selection: list[int] | None = None
    sort: Sort = Field(default_factory=Sort)
    sources: list[str] | None = None
    replace: bool = False


class RenameViewBody(_Body):
    name: str = Field(min_length=1)


class ExportBody(_Body):
    out: str = Field(min_length=1)
    format: str = "coco"
    filters: Filters = Field(default_factory=Filters)
    models: list[str] | None = None
    images: str = "copy"


# --- the handlers ------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, DatasetNotFoundError):
        return 404
    if isinstance(exc, DatasetExistsError):
        return 409
    if isinstance(exc, NotAllowedError):
        return 403
    return 400


def has_login(application: Any) -> bool:
    """The server runs with a login (basic auth, OAuth): its users' cookies count as credentials."""
    provider = getattr(application, "auth_provider", None)
    return provider is not None and (provider.get_user is not None or provider.get_user_async is not None)


class ApiHandler(AuthRequestHandler):
    """JSON in and out, credentials checked before any method runs, our errors as ``{"error": ...}``."""

    user: str | None = None
    needs: dict[str, str] = {}
    """The action (``roles.ACTIONS``) each HTTP method takes; GET reads, anything unnamed needs an admin."""

    def check_xsrf_cookie(self) -> None:  # a token or a same-site login cookie, no form posts to protect
        return None

    async def prepare(self) -> None:
        await super().prepare()
        header = self.request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and _token and hmac.compare_digest(header[7:].strip(), _token[0]):
            self.user = TOKEN_USER
        elif has_login(self.application) and self.current_user:
            user = self.current_user
            self.user = user if isinstance(user, str) else str(user)
        else:
            self._send(401, {"error": "this API needs the owner's token (Authorization: Bearer ...) or a login"})
            return
        action = self.needs.get(self.request.method, "read" if self.request.method == "GET" else "admin")
        try:
            require(self.user, action)
        except NotAllowedError as e:
            self._send(403, {"error": str(e)})

    def _send(self, status: int, payload: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(ops.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = str(exc) if isinstance(exc, ApiError) else self._reason
        self.finish(ops.dumps({"error": message}))

    def body(self, model: type[BaseModel]) -> Any:
        try:
            raw = orjson.loads(self.request.body or b"{}")
        except orjson.JSONDecodeError as e:
            raise ApiError(400, f"the request body is not JSON: {e}") from None
        try:
            return model.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors())
            raise ApiError(400, f"bad request body: {problems}") from None

    async def call(self, fn: Callable[..., Any], *args: Any, status: int = 200, **kwargs: Any) -> None:
        """Run a quick operation off the event loop (every session shares it) and answer with its result."""
        from ..ui.jobs import executor

        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(executor("quick"), lambda: fn(_store(), *args, **kwargs))
        except VisionLensError as e:
            self._send(_status_of(e), {"error": str(e)})
            return
        self._send(status, result)

    def start_job(self, kind: str, title: str, dataset: str | None, fn: Callable[..., Any], **kwargs: Any) -> None:
        job = registry().submit(
            kind, title, lambda progress: fn(_store(), progress=progress, **kwargs), dataset=dataset, user=self.user
        )
        self.set_header("Location", f"{API_PREFIX}/jobs/{job.id}")
        self._send(202, {"job": job.to_json()})

    async def _run(self, method: Callable[..., Any], *args: Any) -> None:
        try:
            result = method(*args)
            if asyncio.iscoroutine(result):
                await result
        except ApiError as e:
            self._send(e.status, {"error": str(e)})
        except VisionLensError as e:
            self._send(_status_of(e), {"error": str(e)})


class HealthHandler(ApiHandler):
    async def get(self) -> None:
        from importlib.metadata import version

        self._send(200, {"app": "visionlens", "version": version("visionlens"), "pid": os.getpid(), "user": self.user})


class DatasetsHandler(ApiHandler):
    needs = {"POST": "ingest"}

    async def get(self) -> None:
        await self.call(ops.list_datasets)

    async def post(self) -> None:
        await self._run(self._ingest)

    def _ingest(self) -> None:
        b: IngestBody = self.body(IngestBody)
        if not b.replace and _store().has_dataset(b.name):
            raise DatasetExistsError(f"a dataset named {b.name!r} exists; send replace: true to overwrite it")
        path = check_allowed(b.path, "dataset path")
        images = check_allowed(b.images, "image folder") if b.images else None
        preds = {m: check_allowed(p, f"predictions of {m!r}") for m, p in b.predictions.items()}
        title = f"ingest {b.name!r}"
        self.start_job(
            "ingest", title, b.name, ops.ingest, path=path, name=b.name, format=b.format, images=images,
            predictions=preds, replace=b.replace,
        )  # fmt: skip


class DatasetHandler(ApiHandler):
    needs = {"DELETE": "delete"}

    async def get(self, name: str) -> None:
        await self.call(ops.dataset_info, name)

    async def delete(self, name: str) -> None:
        await self._run(self._delete, name)

    def _delete(self, name: str) -> None:
        _store().get_dataset(name)  # a missing dataset is a 404 now, not a failed job later
        self.start_job("delete", f"delete {name!r}", name, ops.delete, name=name)


class PredictionsHandler(ApiHandler):
    needs = {"POST": "ingest"}

    async def post(self, name: str) -> None:
        await self._run(self._add, name)

    def _add(self, name: str) -> None:
        b: PredictionsBody = self.body(PredictionsBody)
        _store().get_dataset(name)
        path = check_allowed(b.path, f"predictions of {b.model!r}")
        self.start_job(
            "predictions", f"add {b.model!r} to {name!r}", name, ops.add_predictions,
            name=name, model=b.model, path=path, format=b.format, replace=b.replace,
        )  # fmt: skip


class SamplesHandler(ApiHandler):
    needs = {"POST": "read"}

    async def get(self, name: str) -> None:
        await self._run(self._get, name)

    async def _get(self, name: str) -> None:
        raw: dict[str, Any] = {}
        for key in ("filters", "sort"):
            value = self.get_argument(key, None)
            if value:
                try:
                    raw[key] = orjson.loads(value)
                except orjson.JSONDecodeError as e:
                    raise ApiError(400, f"{key} is not JSON: {e}") from None
        for key in ("offset", "limit"):
            value = self.get_argument(key, None)
            if value is not None:
                raw[key] = value
        try:
            b = SamplesBody.model_validate(raw)
        except ValidationError as e:
            raise ApiError(400, f"bad query: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
        await self.call(ops.samples, name, b.filters, b.sort, b.offset, b.limit)

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    async def _post(self, name: str) -> None:
        b: SamplesBody = self.body(SamplesBody)
        await self.call(ops.samples, name, b.filters, b.sort, b.offset, b.limit)


class AnnotationsHandler(ApiHandler):
    needs = {"POST": "read"}

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    async def _post(self, name: str) -> None:
        b: AnnotationsBody = self.body(AnnotationsBody)
        await self.call(ops.annotations, name, b.sample_ids, b.sources, b.evaluation)


class EvaluateHandler(ApiHandler):
    needs = {"POST": "evaluate"}

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    def _post(self, name: str) -> None:
        b: EvaluateBody = self.body(EvaluateBody)
        _store().get_dataset(name)
        self.start_job(
            "evaluate", f"evaluate {b.model!r} on {name!r}", name, ops.evaluate,
            name=name, model=b.model, iou=b.iou, class_agnostic=b.class_agnostic,
        )  # fmt: skip


class MetricsHandler(ApiHandler):
    needs = {"POST": "read"}

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    async def _post(self, name: str) -> None:
        b: MetricsBody = self.body(MetricsBody)
        await self.call(ops.metrics, name, b.model, b.filters, b.iou, b.class_agnostic)


class EvaluationsHandler(ApiHandler):
    async def get(self, name: str) -> None:
        await self.call(ops.evaluations, name)


class EmbedHandler(ApiHandler):
    needs = {"POST": "embed"}

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    def _post(self, name: str) -> None:
        b: EmbedBody = self.body(EmbedBody)
        _store().get_dataset(name)
        weights = check_allowed(b.weights, "weights file") if b.weights else None
        _check_scheduler(self.user, b.dask_scheduler)
        self.start_job(
            "embed", f"embed {name!r} with {b.embedder}", name, ops.embed,
            name=name, embedder=b.embedder, weights=weights, project=b.project, batch_size=b.batch_size,
            workers=b.workers, dask_scheduler=b.dask_scheduler,
        )  # fmt: skip


class ThumbnailsHandler(ApiHandler):
    needs = {"POST": "thumbnails"}

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    def _post(self, name: str) -> None:
        b: ThumbnailsBody = self.body(ThumbnailsBody)
        _store().get_dataset(name)
        _check_scheduler(self.user, b.dask_scheduler)
        self.start_job(
            "thumbnails", f"thumbnails of {name!r}", name, ops.thumbnails,
            name=name, size=b.size, workers=b.workers, dask_scheduler=b.dask_scheduler,
        )  # fmt: skip


class SimilarHandler(ApiHandler):
    needs = {"POST": "read"}

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    async def _post(self, name: str) -> None:
        b: SimilarBody = self.body(SimilarBody)
        await self.call(ops.similar, name, b.sample_id, b.text, b.k, b.filters, b.collection)


class InsightsHandler(ApiHandler):
    needs = {"POST": "insights"}

    async def get(self, name: str) -> None:
        await self.call(ops.findings, name)

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    def _post(self, name: str) -> None:
        b: InsightsBody = self.body(InsightsBody)
        _store().get_dataset(name)
        self.start_job(
            "insights", f"insights on {name!r}", name, ops.insights, name=name, models=b.models, kinds=b.kinds
        )


class TagsHandler(ApiHandler):
    needs = {"POST": "tag"}

    async def get(self, name: str) -> None:
        await self._run(self._get, name)

    async def _get(self, name: str) -> None:
        raw = self.get_argument("filters", None)
        try:
            flt = Filters.model_validate_json(raw) if raw else None
        except ValidationError as e:
            raise ApiError(400, f"bad filters: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None
        await self.call(ops.tag_counts, name, flt)

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    async def _post(self, name: str) -> None:
        _store().get_dataset(name)  # an unknown dataset is a 404 whatever the body says
        b: TagsBody = self.body(TagsBody)
        remove = b.action == "remove"
        await self.call(ops.tag, name, b.tags, b.filters, b.sample_ids, remove, b.objects, b.ann_ids)


class ViewsHandler(ApiHandler):
    needs = {"POST": "views"}

    async def get(self, name: str) -> None:
        await self.call(ops.views, name)

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    async def _post(self, name: str) -> None:
        _store().get_dataset(name)
        b: SaveViewBody = self.body(SaveViewBody)
        view = b.model_dump(exclude={"replace"})
        await self.call(ops.save_view, name, view, b.replace, self.user, status=201)


class ViewHandler(ApiHandler):
    needs = {"PATCH": "views", "DELETE": "views"}

    async def get(self, name: str, view: str) -> None:
        await self.call(ops.view, name, view)

    async def patch(self, name: str, view: str) -> None:
        await self._run(self._patch, name, view)

    async def _patch(self, name: str, view: str) -> None:
        _store().get_dataset(name)
        b: RenameViewBody = self.body(RenameViewBody)
        await self.call(ops.rename_view, name, view, b.name)

    async def delete(self, name: str, view: str) -> None:
        await self.call(ops.delete_view, name, view)


class ExportHandler(ApiHandler):
    needs = {"POST": "export"}

    """The export folder is a path the server writes (and may replace, when an earlier export made it): it must lie
    inside the allowed roots, like every path a request can make the server read."""

    async def post(self, name: str) -> None:
        await self._run(self._post, name)

    def _post(self, name: str) -> None:
        _store().get_dataset(name)  # an unknown dataset is a 404 whatever the body says
        from ..export import image_mode
        from ..formats.writers import get_writer

        b: ExportBody = self.body(ExportBody)
        get_writer(b.format)  # a bad choice is a 400 now, not a failed job later
        image_mode(b.images)
        out = check_allowed(b.out, "export folder")
        self.start_job(
            "export", f"export {name!r} as {b.format}", name, ops.export,
            name=name, out=out, format=b.format, filters=b.filters, models=b.models, images=b.images,
        )  # fmt: skip


class JobsHandler(ApiHandler):
    async def get(self) -> None:
        self._send(200, {"jobs": [j.to_json(with_result=False) for j in registry().list()]})


class JobHandler(ApiHandler):
    needs = {"DELETE": "cancel"}

    def _job(self, job_id: str) -> Job:
        job = registry().get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} (finished jobs are kept for a while, then forgotten)")
        return job

    async def get(self, job_id: str) -> None:
        await self._run(self._get, job_id)

    async def _get(self, job_id: str) -> None:
        job = self._job(job_id)
        try:
            wait = min(MAX_WAIT_S, max(0.0, float(self.get_argument("wait", "0"))))
        except ValueError:
            raise ApiError(400, "wait must be a number of seconds") from None
        if wait and job.active:
            loop = asyncio.get_running_loop()
            job = await loop.run_in_executor(None, registry().wait, job_id, wait) or job
        self._send(200, {"job": job.to_json()})

    async def delete(self, job_id: str) -> None:
        await self._run(self._delete, job_id)

    def _delete(self, job_id: str) -> None:
        job = self._job(job_id)
        cancelled = job.cancel()
        self._send(200 if cancelled else 409, {"job": job.to_json(with_result=False), "cancelled": cancelled})


_NAME = r"([^/]+)"
ROUTES = [
    (rf"{API_PREFIX}/health", HealthHandler, {}),
    (rf"{API_PREFIX}/datasets", DatasetsHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}", DatasetHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/predictions", PredictionsHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/samples", SamplesHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/annotations", AnnotationsHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/evaluate", EvaluateHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/metrics", MetricsHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/evaluations", EvaluationsHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/embed", EmbedHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/thumbnails", ThumbnailsHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/similar", SimilarHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/insights", InsightsHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/tags", TagsHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/views", ViewsHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/views/{_NAME}", ViewHandler, {}),
    (rf"{API_PREFIX}/datasets/{_NAME}/export", ExportHandler, {}),
    (rf"{API_PREFIX}/jobs", JobsHandler, {}),
    (rf"{API_PREFIX}/jobs/([0-9a-f]+)", JobHandler, {}),
]
