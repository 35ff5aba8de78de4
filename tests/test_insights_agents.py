"""The insight agents on a real database: pydantic-ai's FunctionModel/TestModel stand in for the paid LLM only;
the tools read the findings the real analyses stored."""

from __future__ import annotations

import json

import pytest
from pydantic_ai import BinaryContent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from visionlens.errors import VisionLensError
from visionlens.insights.agents import build_llm, explain, template_report
from visionlens.insights.runner import run_insights
from visionlens.query import Filters


@pytest.fixture
def analysed(demo_ds):
    run_insights(demo_ds.store, demo_ds.id, kinds=["slice", "error_pattern", "label_mistake"])
    return demo_ds


def _tool_returns(messages: list[ModelMessage], tool: str) -> list:
    return [
        p.content
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart) and p.tool_name == tool
    ]


def _final(info: AgentInfo, **args) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args)])


def test_agent_reads_real_findings_through_its_tools_and_cites_them(analysed):
    calls: list[str] = []

    def detector(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        listed = _tool_returns(messages, "list_findings")
        if not listed:
            calls.append("list")
            return ModelResponse(parts=[ToolCallPart("list_findings", {"kind": "slice", "limit": 5})])
        top = listed[0][0]
        metrics = _tool_returns(messages, "finding_metrics")
        if not metrics:
            calls.append("metrics")
            return ModelResponse(
                parts=[ToolCallPart("finding_metrics", {"finding_id": top["id"], "model": "detector_a"})]
            )
        m = metrics[0]
        calls.append("final")
        return _final(
            info,
            summary=f"{top['title']}: AP {m['finding']['AP']} vs {m['whole_dataset']['AP']}.",
            cited=[{"finding_id": top["id"], "why": "worst slice"}],
            next_steps=["label more night images"],
        )

    report = explain(analysed.store, analysed.id, "blind_spots", llm=FunctionModel(detector))
    assert calls == ["list", "metrics", "final"]
    stored = {f["id"]: f for f in analysed.store.findings(analysed.id, kind="slice")}
    assert report.cited[0].finding_id in stored
    assert stored[report.cited[0].finding_id]["title"] in report.summary
    row = stored[report.cited[0].finding_id]
    flt = Filters.model_validate_json(row["filters"]) if row["filters"] else Filters(finding=row["id"])
    assert f"AP {round(analysed.metrics('detector_a', flt).stats['AP'], 4)}" in report.summary  # the tool's number
    assert report.written_by.startswith("model:")


def test_citations_of_findings_that_do_not_exist_are_sent_back(analysed):
    attempts: list[list[int]] = []

    def detector(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        output_tool = info.output_tools[0].name  # a refused output comes back as that tool's (failed) return
        retried = any(
            isinstance(p, (RetryPromptPart, ToolReturnPart)) and p.tool_name == output_tool
            for m in messages
            if isinstance(m, ModelRequest)
            for p in m.parts
        )
        listed = _tool_returns(messages, "list_findings")
        if not listed:
            return ModelResponse(parts=[ToolCallPart("list_findings", {"kind": "error_pattern"})])
        cited = [listed[0][0]["id"]] if retried else [987654321]
        attempts.append(cited)
        return _final(info, summary="s", cited=[{"finding_id": i, "why": "w"} for i in cited], next_steps=[])

    report = explain(analysed.store, analysed.id, "error_patterns", llm=FunctionModel(detector))
    assert attempts[0] == [987654321] and len(attempts) == 2
    assert analysed.store.finding(analysed.id, report.cited[0].finding_id)["kind"] == "error_pattern"


def test_tools_survive_whatever_arguments_a_model_invents(analysed):
    valid = analysed.store.findings(analysed.id, kind="label_mistake")[0]["id"]
    model = TestModel(
        call_tools="all",
        custom_output_args={"summary": "ok", "cited": [{"finding_id": valid, "why": "top"}], "next_steps": ["relabel"]},
    )
    report = explain(analysed.store, analysed.id, "error_patterns", llm=model)
    assert report.cited[0].finding_id == valid


def test_a_multimodal_agent_sees_thumbnails_of_a_finding(analysed):
    pattern = analysed.store.findings(analysed.id, kind="error_pattern")[0]
    seen: list[int] = []

    def detector(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        images = [
            c
            for m in messages
            if isinstance(m, ModelRequest)
            for p in m.parts
            if isinstance(p, UserPromptPart) and not isinstance(p.content, str)
            for c in p.content
            if isinstance(c, BinaryContent)
        ]
        if not images:
            return ModelResponse(parts=[ToolCallPart("look_at_finding", {"finding_id": pattern["id"], "n": 3})])
        seen.append(len(images))
        assert all(img.media_type == "image/jpeg" and img.data.startswith(b"\xff\xd8") for img in images)
        return _final(info, summary="s", cited=[{"finding_id": pattern["id"], "why": "w"}], next_steps=[])

    from visionlens.thumbnails import full_image

    def thumbnail(sample_id: int) -> bytes:
        row = analysed.store.samples_by_id(analysed.id, [sample_id]).to_pylist()[0]
        return full_image(analysed.uri(row["filepath"]), 128).data

    explain(analysed.store, analysed.id, "error_patterns", llm=FunctionModel(detector), thumbnail=thumbnail)
    assert seen == [min(3, pattern["n_samples"])]


def test_without_a_model_the_report_comes_from_templates(analysed, monkeypatch):
    monkeypatch.delenv("VISIONLENS_LLM", raising=False)
    report = explain(analysed.store, analysed.id, "error_patterns")
    assert report.written_by == "template" and report.cited and report.next_steps
    kinds = {analysed.store.finding(analysed.id, c.finding_id)["kind"] for c in report.cited}
    assert kinds <= {"error_pattern", "label_mistake"} and "label_mistake" in kinds
    blind = template_report(analysed.store, analysed.id, "blind_spots", model="detector_b")
    assert all(analysed.store.finding(analysed.id, c.finding_id)["model"] in ("detector_b", None) for c in blind.cited)
    json.dumps(report.model_dump())  # plain data for the API and the app


def test_template_report_before_any_insights(demo_ds):
    report = template_report(demo_ds.store, demo_ds.id, "blind_spots")
    assert not report.cited and "insights" in report.summary


def test_the_language_model_comes_from_settings(monkeypatch):
    monkeypatch.setenv("VISIONLENS_LLM", "openai:qwen2.5")
    monkeypatch.setenv("VISIONLENS_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    llm = build_llm()
    assert llm.model_name == "qwen2.5" and "127.0.0.1:11434" in str(llm.client.base_url)
    monkeypatch.setenv("VISIONLENS_LLM", "anthropic:claude-sonnet-4-5")
    monkeypatch.setenv("VISIONLENS_LLM_API_KEY", "sk-test")
    assert build_llm().model_name == "claude-sonnet-4-5"
    monkeypatch.setenv("VISIONLENS_LLM", "gpt4")
    with pytest.raises(VisionLensError, match="openai:<model>"):
        build_llm()
