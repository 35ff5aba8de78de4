"""Two pydantic-ai agents that read the stored findings and write a report citing them.

The analyses find things; the agents explain them: which blind spots matter most and what to do next. Their
tools only read the findings and the store (nothing an agent says is a number it made up: every number comes
from a tool), and their typed output must cite finding ids that exist, or the model is asked again.

The language model comes from settings (``VISIONLENS_LLM``: ``openai:<model>`` for any OpenAI-compatible
endpoint, e.g. Ollama or vLLM with ``VISIONLENS_LLM_BASE_URL``, or ``anthropic:<model>``), optionally
multimodal (``VISIONLENS_LLM_MULTIMODAL=1``: the agent may look at thumbnails of a finding's images to name it).
Without a model the same report is written from templates, so the feature works offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

try:  # the agents need the [agents] extra; the template report, which needs no model, works without it
    from pydantic_ai import RunContext
except ImportError:  # pragma: no cover - exercised by tests/test_light_install.py in a subprocess
    RunContext = Any  # type: ignore[assignment,misc]

from ..config import Settings, get_settings
from ..errors import VisionLensError
from ..store.metadata import MetadataStore
from .finding import Finding, load_findings

AgentName = Literal["blind_spots", "error_patterns"]
_AGENT_KINDS: dict[str, tuple[str, ...]] = {
    "blind_spots": ("slice", "near_duplicate"),
    "error_patterns": ("error_pattern", "label_mistake"),
}
_INSTRUCTIONS = {
    "blind_spots": (
        "You analyse where an object detector fails on a dataset. Use the tools to read the stored blind-spot "
        "slices (subsets where recall or false positives are significantly worse than on the rest) and "
        "near-duplicate/leakage findings. Report the few that matter most, citing their finding ids, in plain "
        "words a machine-learning engineer can act on, and propose concrete next steps (collect or label more of "
        "a slice, fix leakage between splits, tune thresholds). Only state numbers a tool returned."
    ),
    "error_patterns": (
        "You analyse what kinds of errors an object detector makes. Use the tools to read the stored error "
        "patterns (AP lost to classification, localisation, duplicate, background and missed errors, class "
        "confusions) and label-mistake candidates (ground truth that is probably wrong). Report the few that "
        "matter most, citing their finding ids, and propose concrete next steps (relabel, NMS, more data of a "
        "class, box quality). Only state numbers a tool returned."
    ),
}


class CitedFinding(BaseModel):
    finding_id: int = Field(description="id of a stored finding, as returned by the tools")
    why: str = Field(description="one sentence: why this finding matters")


class InsightReport(BaseModel):
    """What an agent (or the template writer) returns."""

    summary: str = Field(description="two to four sentences on the most important problems")
    cited: list[CitedFinding] = Field(description="the findings the summary rests on, most important first")
    next_steps: list[str] = Field(description="concrete actions, most valuable first")
    written_by: str = Field(default="", description="leave empty")


@dataclass
class AgentDeps:
    """What the tools may read: one dataset of one store, and how to get a JPEG of a sample (multimodal)."""

    store: MetadataStore
    dataset_id: int
    model: str | None = None
    thumbnail: Callable[[int], bytes] | None = None


# -- tools ------------------------------------------------------------------------------------------------------


def _finding(deps: AgentDeps, finding_id: int) -> dict[str, Any] | None:
    return deps.store.finding(deps.dataset_id, int(finding_id))


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "title": row["title"],
        "score": round(float(row["score"] or 0), 4),
        "model": row["model"],
        "definition": row["definition"],
        "images": row["n_samples"],
        "objects": row["n_objects"],
    }


def list_findings(ctx: RunContext[AgentDeps], kind: str, limit: int = 10) -> list[dict[str, Any]] | str:
    """The stored findings of one kind (slice, near_duplicate, error_pattern, label_mistake), best first:
    id, title, score, model, definition, number of images and objects."""
    deps: AgentDeps = ctx.deps
    rows = deps.store.findings(deps.dataset_id, kind=kind)
    if deps.model is not None:
        rows = [r for r in rows if r["model"] in (deps.model, None)]
    if not rows:
        return f"no stored findings of kind {kind!r}: run insights first, or this dataset has none of that kind"
    return [_brief(r) for r in rows[: max(1, min(int(limit), 50))]]


def finding_evidence(ctx: RunContext[AgentDeps], finding_id: int) -> dict[str, Any] | str:
    """Everything stored about one finding: its definition, description and the numbers behind it."""
    row = _finding(ctx.deps, finding_id)
    if row is None:
        return f"there is no finding with id {finding_id}"
    return {**_brief(row), "description": row["description"], "evidence": row["evidence"], "detail": row["detail"]}


def finding_metrics(ctx: RunContext[AgentDeps], finding_id: int, model: str) -> dict[str, Any] | str:
    """COCO AP, AP50 and recall of ``model`` on the finding's images, next to the whole dataset's."""
    from ..metrics import subset_metrics
    from ..query import Filters

    deps: AgentDeps = ctx.deps
    row = _finding(deps, finding_id)
    if row is None:
        return f"there is no finding with id {finding_id}"
    if model not in deps.store.source_ids(deps.dataset_id):
        return f"there is no model named {model!r}"
    flt = Filters.model_validate_json(row["filters"]) if row["filters"] else Filters(finding=int(finding_id))
    part = subset_metrics(deps.store, deps.dataset_id, model, flt)
    whole = subset_metrics(deps.store, deps.dataset_id, model, Filters())
    keys = ("AP", "AP50", "AR100")
    return {
        "images": part.samples,
        "finding": {k: round(part.stats[k], 4) for k in keys},
        "whole_dataset": {k: round(whole.stats[k], 4) for k in keys},
    }


def look_at_finding(ctx: RunContext[AgentDeps], finding_id: int, n: int = 4) -> Any:
    """Thumbnails of up to ``n`` of the finding's images, to see what they have in common."""
    from pydantic_ai import BinaryContent, ToolReturn

    deps: AgentDeps = ctx.deps
    if deps.thumbnail is None or _finding(deps, finding_id) is None:
        return f"no images for finding {finding_id}"
    ids = deps.store.finding_members(deps.dataset_id, int(finding_id))["sample_id"].to_pylist()
    ids = list(dict.fromkeys(ids))[: max(1, min(int(n), 8))]
    if not ids:
        return f"finding {finding_id} has no stored images (it is a field condition: use finding_evidence)"
    images = [BinaryContent(data=deps.thumbnail(i), media_type="image/jpeg") for i in ids]
    return ToolReturn(return_value=f"{len(images)} images of finding {finding_id}", content=images)


# -- agents -----------------------------------------------------------------------------------------------------


def _require_pydantic_ai() -> None:
    if RunContext is Any:
        raise VisionLensError("the insight agents need pydantic-ai: pip install 'visionlens[agents]'")


def build_llm(settings: Settings | None = None) -> Any:
    """The configured language model, or None when none is configured."""
    settings = settings or get_settings()
    spec = settings.llm
    if not spec:
        return None
    _require_pydantic_ai()
    provider, _, name = spec.partition(":")
    if not name:
        raise VisionLensError(f"VISIONLENS_LLM={spec!r}: use 'openai:<model>' or 'anthropic:<model>'")
    if provider == "openai":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        # a local endpoint (Ollama, vLLM) needs no key, but the client insists on one
        key = settings.llm_api_key or ("not-needed" if settings.llm_base_url else None)
        return OpenAIChatModel(name, provider=OpenAIProvider(base_url=settings.llm_base_url, api_key=key))
    if provider == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(
            name, provider=AnthropicProvider(api_key=settings.llm_api_key, base_url=settings.llm_base_url)
        )
    raise VisionLensError(f"VISIONLENS_LLM={spec!r}: unknown provider {provider!r} (openai or anthropic)")


def build_agent(name: AgentName, multimodal: bool = False) -> Any:
    """A pydantic-ai agent with the read-only tools and an output validator that checks every citation."""
    _require_pydantic_ai()
    from pydantic_ai import Agent, ModelRetry

    if name not in _INSTRUCTIONS:
        raise VisionLensError(f"unknown agent {name!r}; agents: {', '.join(_INSTRUCTIONS)}")
    tools: list[Any] = [list_findings, finding_evidence, finding_metrics]
    if multimodal:
        tools.append(look_at_finding)
    agent: Any = Agent(
        output_type=InsightReport,
        deps_type=AgentDeps,
        instructions=_INSTRUCTIONS[name],
        tools=tools,
        name=name,
        retries=3,
    )

    @agent.output_validator
    def cited_findings_exist(ctx: RunContext[AgentDeps], report: InsightReport) -> InsightReport:
        missing = [c.finding_id for c in report.cited if _finding(ctx.deps, c.finding_id) is None]
        if missing:
            raise ModelRetry(f"finding id(s) {missing} do not exist: cite only ids returned by list_findings")
        if not report.cited:
            raise ModelRetry("cite at least one finding id returned by list_findings")
        return report

    return agent


def explain(
    store: MetadataStore,
    dataset_id: int,
    agent: AgentName = "blind_spots",
    model: str | None = None,
    llm: Any = None,
    thumbnail: Callable[[int], bytes] | None = None,
) -> InsightReport:
    """A report on the stored findings for ``agent``'s kinds: by the language model (``llm``, default from
    settings) when there is one, else from templates. ``model`` narrows it to one detector's findings."""
    settings = get_settings()
    llm = llm if llm is not None else build_llm(settings)
    deps = AgentDeps(store, dataset_id, model, thumbnail if settings.llm_multimodal or thumbnail else None)
    if llm is None:
        return template_report(store, dataset_id, agent, model)
    prompt = (
        f"Dataset {store.dataset_by_id(dataset_id).name!r}"
        + (f", detector {model!r}" if model else "")
        + f". Look at the stored findings of kinds {', '.join(_AGENT_KINDS[agent])} and write the report."
    )
    result = build_agent(agent, multimodal=deps.thumbnail is not None).run_sync(prompt, deps=deps, model=llm)
    report: InsightReport = result.output
    return report.model_copy(update={"written_by": f"model:{getattr(llm, 'model_name', type(llm).__name__)}"})


# -- without a language model -----------------------------------------------------------------------------------

_NEXT_STEP = {
    "slice": "Collect and label more images where {definition}, or weight them up in training ({title}).",
    "near_duplicate": "Remove or merge the near-duplicate images of '{title}'; copies across splits inflate "
    "validation numbers.",
    "error_pattern": "Address '{title}': inspect its objects in the grid (click the finding).",
    "label_mistake": "Review the top label-mistake candidates ('{title}' first) and fix the ground truth.",
}


def template_report(
    store: MetadataStore, dataset_id: int, agent: AgentName = "blind_spots", model: str | None = None, top: int = 3
) -> InsightReport:
    """The report written without a language model: the best findings of the agent's kinds, in sentences."""
    if agent not in _AGENT_KINDS:
        raise VisionLensError(f"unknown agent {agent!r}; agents: {', '.join(_AGENT_KINDS)}")
    chosen: list[Finding] = []
    for kind in _AGENT_KINDS[agent]:
        found = [f for f in load_findings(store, dataset_id, kind=kind) if model is None or f.model in (model, None)]
        chosen += found[:top]
    if not chosen:
        kinds = " or ".join(_AGENT_KINDS[agent])
        return InsightReport(
            summary=f"No stored {kinds} findings: run the insights first (`visionlens insights`).",
            cited=[],
            next_steps=["Run `visionlens insights NAME`."],
            written_by="template",
        )
    chosen.sort(key=lambda f: -f.score)
    lines = [
        f"{f.title}" + (f" ({f.definition})" if f.definition and f.definition not in f.title else "")
        for f in chosen[:top]
    ]
    summary = f"{len(chosen)} findings stand out. Most important: " + "; ".join(lines) + "."
    cited = [CitedFinding(finding_id=int(f.id), why=_why(f)) for f in chosen if f.id is not None]
    steps = list(
        dict.fromkeys(_NEXT_STEP[f.kind].format(title=f.title, definition=f.definition or f.title) for f in chosen)
    )
    return InsightReport(summary=summary, cited=cited, next_steps=steps, written_by="template")


def _why(f: Finding) -> str:
    ev = f.evidence
    if f.kind == "slice" and "recall" in ev and "rest_recall" in ev:
        return f"recall {float(ev['recall']):.2f} here vs {float(ev['rest_recall']):.2f} elsewhere"
    return f"score {f.score:.3g}" + (f", {f.description}" if f.description else "")
