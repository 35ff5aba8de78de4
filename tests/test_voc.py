"""Pascal VOC ingestion on real files."""

from __future__ import annotations

import pytest

import visionlens as vl
from tests.factories import voc_xml, write_voc
from visionlens.errors import IngestError


def test_voc_boxes_splits_and_difficult(store, tmp_path):
    root = write_voc(
        tmp_path / "v",
        {
            "img1": voc_xml("img1.jpg", [("dog", 11, 21, 50, 60), ("cat", 1, 1, 10, 10)], difficult={1}),
            "img2": voc_xml("img2.jpg", [("dog", 5, 5, 100, 80)]),
        },
        splits={"train": ["img1"], "val": ["img2"]},
    )
    ds = vl.ingest(root, "v", store=store)
    assert ds.format == "voc" and ds.count() == 2
    assert dict(ds.value_counts("split")) == {"train": 1, "val": 1}
    row = ds.samples({"split": "train"}).iloc[0]
    assert row["filepath"] == "JPEGImages/img1.jpg"
    ann = ds.annotations([row["id"]]).sort_values("x")
    cat, dog = ann.iloc[0], ann.iloc[1]
    assert [dog["x"], dog["y"], dog["w"], dog["h"]] == [10, 20, 40, 40]
    assert bool(cat["iscrowd"]) and not bool(dog["iscrowd"])


def test_voc_predictions_with_scores_and_new_labels(store, tmp_path):
    root = write_voc(tmp_path / "v", {"img1": voc_xml("img1.jpg", [("dog", 11, 21, 50, 60)])})
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "img1.xml").write_text(
        voc_xml("img1.jpg", [("dog", 12, 20, 50, 61), ("horse", 1, 1, 5, 5)], scores=[0.8, 0.1])
    )
    ds = vl.ingest(root, "v", predictions={"ssd": preds}, store=store)
    assert "horse" in ds.labels()
    ann = ds.annotations(ds.sample_ids(), sources=["ssd"]).sort_values("confidence")
    assert list(ann["label"]) == ["horse", "dog"]
    assert any(i.kind == "new_labels" for i in ds.issues())


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            "<annotation><filename>a.jpg</filename>\n<object><name>dog</name>\n</annotation>",
            r"a\.xml:line 3, column \d+: malformed XML",
        ),
        (
            "<annotation><filename>a.jpg</filename><object><name>dog</name></object></annotation>",
            r"object\[1\]: missing <bndbox>",
        ),
        (
            "<annotation><filename>a.jpg</filename><object><name>dog</name><bndbox><xmin>x</xmin><ymin>1</ymin>"
            "<xmax>2</xmax><ymax>3</ymax></bndbox></object></annotation>",
            r"<xmin> is 'x', not a number",
        ),
        ("<annotation><filename>../../a.jpg</filename></annotation>", r"filename: file name '../../a.jpg' escapes"),
        ("<annotation><object/></annotation>", r"annotation: missing <filename>"),
    ],
)
def test_bad_xml_is_named(store, tmp_path, xml, message):
    root = write_voc(tmp_path / "v", {"ok": voc_xml("ok.jpg", [("dog", 1, 1, 5, 5)]), "a": xml})
    with pytest.raises(IngestError, match=message) as e:
        vl.ingest(root, "v", store=store)
    assert "Annotations/a.xml" in str(e.value)
    assert store.table_counts()["annotations"] == 0


def test_non_utf8_xml_without_declaration(store, tmp_path):
    root = write_voc(tmp_path / "v", {"ok": voc_xml("ok.jpg", [("dog", 1, 1, 5, 5)])})
    (root / "Annotations" / "ok.xml").write_bytes(voc_xml("ok.jpg", [("ch\xe9vre", 1, 1, 5, 5)]).encode("latin-1"))
    with pytest.raises(IngestError, match=r"ok\.xml:line 1, column \d+: malformed XML"):
        vl.ingest(root, "v", store=store)
