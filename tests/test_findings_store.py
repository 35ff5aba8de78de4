"""Stored findings: a run replaces only itself, a finding filters the grid by its members, deletes clean up."""

from __future__ import annotations

import numpy as np
import pytest

import visionlens as vl
from visionlens.errors import FieldNameError
from visionlens.insights import Finding, load_findings, save_run
from visionlens.query import FieldFilter, Filters


def test_a_run_replaces_its_own_findings_and_fields_only(demo_ds):
    store, ds_id = demo_ds.store, demo_ds.id
    ids = demo_ds.sample_ids()
    a = save_run(
        store,
        ds_id,
        "clusters",
        [
            Finding(kind="slice", title="cluster 1", score=2.0, sample_ids=ids[:7].tolist()),
            Finding(
                kind="slice",
                title="night",
                score=3.0,
                filters=Filters(fields=(FieldFilter(field="split", values=("val",)),)),
            ),
        ],
    )
    b = save_run(
        store,
        ds_id,
        "mistakes",
        [
            Finding(
                kind="label_mistake",
                title="box",
                score=0.9,
                sample_ids=[int(ids[3])],
                object_ids=[123],
                member_scores=[0.9],
            )
        ],
        sample_fields={"mistake score": (ids[:2], np.array([0.5, 0.25]))},
    )
    assert [f.title for f in load_findings(store, ds_id, kind="slice")] == ["night", "cluster 1"]
    assert demo_ds.count(Filters(finding=a[0].id)) == 7 == demo_ds.count(a[0].app_filters())
    assert demo_ds.count(a[1].app_filters()) == demo_ds.count({"split": "val"})
    stored = {f["title"]: f for f in store.findings(ds_id)}
    assert stored["night"]["n_samples"] == demo_ds.count({"split": "val"}) and stored["cluster 1"]["n_samples"] == 7
    assert demo_ds.count({"mistake score": (0.3, 1.0)}) == 1
    assert Filters.from_url(Filters(finding=a[0].id).to_url()).finding == a[0].id  # shareable by link
    members = load_findings(store, ds_id, run="mistakes", with_members=True)[0]
    assert members.object_ids == [123] and members.member_scores == [0.9] and b[0].id == members.id

    save_run(store, ds_id, "clusters", [Finding(kind="slice", title="cluster 9", score=1.0, sample_ids=[int(ids[0])])])
    assert [f.title for f in load_findings(store, ds_id, kind="slice")] == ["cluster 9"]
    assert demo_ds.count(Filters(finding=a[0].id)) == 0  # the old run's members are gone
    assert "mistake score" in demo_ds.fields()  # another run's field is untouched
    save_run(store, ds_id, "mistakes", [])
    assert "mistake score" not in demo_ds.fields()


def test_run_fields_may_not_take_a_users_name(demo_ds):
    with pytest.raises(FieldNameError):
        save_run(demo_ds.store, demo_ds.id, "x", [], sample_fields={"Split": (np.zeros(0), np.zeros(0))})


def test_deleting_the_dataset_removes_findings(demo_ds, store):
    save_run(store, demo_ds.id, "r", [Finding(kind="slice", title="t", score=1, sample_ids=[1, 2])])
    vl.delete_dataset(demo_ds.name, store=store)
    with store.cursor() as cur:
        for table in ("findings", "finding_members", "insight_runs"):
            assert cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
