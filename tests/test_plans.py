"""The evaluation and anonymisation plans (overlearning/workflow/plans.py), without a workflow.

Expected names and paths are written out by hand from docs/evaluation.md and
docs/anonymisation.md, not derived from the code under test.
"""

from __future__ import annotations

import pytest

from overlearning.workflow.plans import (
    DATA_SETS,
    DERIVED_SETS,
    AnonymisationPlan,
    EvaluationPlan,
    plan_inputs,
)

ROOTS = {"market1501": "d/market1501", "cuhk03_labeled": "d/cuhk03/labeled"}


def _plan(exclusion_sets=("vis_test", "market1501"), person_sets=("market1501",)) -> EvaluationPlan:
    return EvaluationPlan(
        data="d", results="r", person_roots=ROOTS, person_sets=list(person_sets),
        probes=["torso"], vis_person_category=26, ovis_person_category=1,
        exclusion_sets=frozenset(exclusion_sets), exclusion_modes=["none", "excluded"],
    )


def test_embedding_sets_and_evaluations_of_one_person_set() -> None:
    plan = _plan()
    assert list(plan.embedding_sources) == [
        "vis_test", "ovis_test", "market1501_query", "market1501_gallery",
        "market1501_probe_torso", "market1501_probe_clothes"]
    assert plan.embedding_sources["ovis_test"] == {
        "kind": "crops", "source": "d/ovis/test",
        "images": "d/ovis/test/foregroundImages_cropped.zip",
        "index": "d/ovis/test/fg_instances_cropped.json", "category": 1}
    assert plan.embedding_sources["market1501_probe_torso"]["images"] == \
        "d/market1501/probes/torso.zip"
    assert list(plan.evaluations) == ["nonperson", "person", "market1501",
                                      "market1501_probe_torso", "market1501_probe_clothes"]
    assert plan.embed_sets("ms", DATA_SETS)[0] == ("r/embeddings/ms/vis_test.npz", "crops",
                                                   "d/vis/test", 26, "-")
    assert plan.embed_sets("ms", DATA_SETS)[2] == ("r/embeddings/ms/market1501_query.npz", "pack",
                                                   "d/market1501/foreground_query.zip", None, "-")


def test_sets_cut_by_a_detection_model_are_embedded_apart() -> None:
    """The clothes probes (cut by SegFormer or GroundingDINO + SAM) are one embedding job of
    a model; every other set, read from the prepared data alone, is the other."""
    plan = _plan(person_sets=("market1501", "cuhk03_labeled"))
    assert plan.group_sets(DERIVED_SETS) == ["market1501_probe_clothes",
                                             "cuhk03_labeled_probe_clothes"]
    assert plan.group_sets(DATA_SETS) == [
        "vis_test", "ovis_test", "market1501_query", "market1501_gallery",
        "market1501_probe_torso", "cuhk03_labeled_query", "cuhk03_labeled_gallery",
        "cuhk03_labeled_probe_torso"]
    assert plan.embedding_files("ms", DERIVED_SETS) == [
        "r/embeddings/ms/market1501_probe_clothes.npz",
        "r/embeddings/ms/cuhk03_labeled_probe_clothes.npz"]
    assert plan.embed_sets("ms", DERIVED_SETS) == [
        ("r/embeddings/ms/market1501_probe_clothes.npz", "pack",
         "d/market1501/probes/clothes.zip", None, "-"),
        ("r/embeddings/ms/cuhk03_labeled_probe_clothes.npz", "pack",
         "d/cuhk03/labeled/probes/clothes.zip", None, "-")]
    # The derived job reads the clothes packs and the model, nothing of the data's sets.
    assert plan.embed_inputs("ms", DERIVED_SETS) == {
        "trunk": "r/models/ms/trunk.safetensors", "embedder": "r/models/ms/embedder.safetensors",
        "images": ["d/cuhk03/labeled/probes/clothes.zip", "d/market1501/probes/clothes.zip"],
        "indexes": []}
    data = plan.source_inputs(DATA_SETS)
    assert not any("clothes" in path for path in data["images"]), data
    assert data["indexes"] == ["d/ovis/test/fg_instances_cropped.json",
                               "d/vis/test/fg_instances_cropped.json"]
    # The metrics of the clothes probe read the derived job's query and the data job's gallery.
    job = plan.metrics_job("ms", "market1501_probe_clothes", "none")
    assert job["query"] == ["r/embeddings/ms/market1501_probe_clothes.npz", "all"]
    assert [ref[0] for ref in job["references"]] == ["r/embeddings/ms/market1501_gallery.npz"]
    with pytest.raises(ValueError, match="anonymised"):
        plan.group_sets("anonymised")


def test_metrics_job_applies_exclusion_only_where_detection_ran() -> None:
    plan = _plan()
    job = plan.metrics_job("ms", "person", "excluded")
    assert job == {
        "query": ["r/embeddings/ms/vis_test.npz", "persons"],
        "references": [["r/embeddings/ms/vis_test.npz", "all", "r/exclusion/vis_test.json",
                        "r/exclusion/vis_test.json"],
                       ["r/embeddings/ms/ovis_test.npz", "all", "-", "-"]],
        "reid": False, "setting": "ms", "evaluation": "person", "exclusion": "excluded",
        "out": "r/metrics/ms/person/excluded.json",
    }
    # Exclusion off: nothing removed; the list only marks items in the per-query evidence.
    assert plan.metrics_job("ms", "market1501", "none")["references"] == [
        ["r/embeddings/ms/market1501_gallery.npz", "all", "-", "r/exclusion/market1501.json"]]
    assert _plan(exclusion_sets=("vis_test",)).metrics_job("ms", "market1501", "none")[
        "references"] == [["r/embeddings/ms/market1501_gallery.npz", "all", "-", "-"]]
    assert plan.metrics_job("ms", "person", "none")["references"][0] == [
        "r/embeddings/ms/vis_test.npz", "all", "-", "r/exclusion/vis_test.json"]
    assert plan.metrics_job("ms", "market1501", "none")["reid"] is True
    assert plan_inputs([job]) == {
        "embeddings": ["r/embeddings/ms/ovis_test.npz", "r/embeddings/ms/vis_test.npz"],
        "exclusions": ["r/exclusion/vis_test.json"]}


def test_exclusion_rows_need_the_detector_on_every_excluded_set() -> None:
    plan = _plan(exclusion_sets=("vis_test",))
    assert plan.evaluation_available("market1501", "none")
    assert not plan.evaluation_available("market1501", "excluded")
    assert plan.evaluation_available("person", "excluded")
    # 5 evaluations without exclusion, only the 2 VIS ones with it.
    assert [(j["evaluation"], j["exclusion"]) for j in plan.setting_metrics_jobs("ms")] == [
        ("nonperson", "none"), ("person", "none"), ("market1501", "none"),
        ("market1501_probe_torso", "none"), ("market1501_probe_clothes", "none"),
        ("nonperson", "excluded"), ("person", "excluded")]
    assert plan.metrics_files(["ms", "center"], ["person", "market1501"]) == [
        "r/metrics/ms/person/none.json", "r/metrics/ms/market1501/none.json",
        "r/metrics/ms/person/excluded.json",
        "r/metrics/center/person/none.json", "r/metrics/center/market1501/none.json",
        "r/metrics/center/person/excluded.json"]


def test_from_config_reads_only_the_evaluation_inputs() -> None:
    config = {
        "paths": {"data": "d", "results": "r"},
        "preparation": {"probes": {"occlusions": ["upper_half"]}, "vis_person_category": 26,
                        "ovis_person_category": 1},
        "evaluation": {"person_sets": ["market1501"], "exclusion": ["none"]},
        "detection": {"sets": ["vis_test"]},
    }
    plan = EvaluationPlan.from_config(config, ROOTS)
    assert plan.probes == ["torso", "upper_half"]
    assert plan.exclusion_modes == ["none"]
    with pytest.raises(KeyError):
        EvaluationPlan.from_config({**config, "evaluation": {"exclusion": ["none"]}}, ROOTS)


METHODS = [{"method": "mosaic", "strength": 24}, {"method": "noise", "strength": 0.5}]


def test_anonymised_sets_follow_the_detector_coverage() -> None:
    anon = AnonymisationPlan(_plan(exclusion_sets=("vis_test",)), METHODS)
    assert anon.variants == ["mosaic_24", "noise_0.5"]
    assert anon.evaluations == ["nonperson", "person", "market1501"]
    # No detections on Market: only its oracle (gt) copy is made.
    assert anon.sets == ["vis_test_detected", "vis_test_gt", "market1501_gt"]
    assert anon.set_dirs()[:3] == ["d/anon/mosaic_24/vis_test_detected",
                                   "d/anon/mosaic_24/vis_test_gt", "d/anon/mosaic_24/market1501_gt"]
    # A variant is embedded as its raw set with the variant's changed images laid over it.
    assert anon.embed_sets("ms")[2] == (
        "r/embeddings/ms/anon/mosaic_24/market1501_gt.npz", "pack",
        "d/market1501/foregroundImages_cropped.zip", None,
        "d/anon/mosaic_24/market1501_gt/changed.zip")
    assert anon.embed_sets("ms")[0][1:] == (
        "crops", "d/vis/test", 26, "d/anon/mosaic_24/vis_test_detected/changed.zip")
    assert anon.set_files("mosaic_24", "vis_test_gt") == {
        "delta": "d/anon/mosaic_24/vis_test_gt/changed.zip",
        "manifest": "d/anon/mosaic_24/vis_test_gt/anonymised.json",
        "exclusion": "d/anon/mosaic_24/vis_test_gt/exclusion.json"}
    assert anon.embed_inputs()[:3] == ["d/market1501/foregroundImages_cropped.zip",
                                       "d/vis/test/fg_instances_cropped.json",
                                       "d/vis/test/foregroundImages_cropped.zip"]
    assert not anon.available("market1501", "detected")
    assert anon.available("market1501", "gt") and anon.available("person", "detected")


def test_anonymised_metrics_job_swaps_the_index_and_marks_query_copies() -> None:
    anon = AnonymisationPlan(_plan(), METHODS)
    job = anon.metrics_job("ms", "person", "detected", "mosaic_24")
    assert job == {
        "query": ["r/embeddings/ms/vis_test.npz", "persons"],
        "references": [["r/embeddings/ms/anon/mosaic_24/vis_test_detected.npz", "all",
                        "d/anon/mosaic_24/vis_test_detected/exclusion.json",
                        "d/anon/mosaic_24/vis_test_detected/exclusion.json"],
                       ["r/embeddings/ms/ovis_test.npz", "all", "-", "-"]],
        "query_copies": ["r/embeddings/ms/anon/mosaic_24/vis_test_detected.npz"],
        "reid": False, "setting": "ms", "evaluation": "person",
        "exclusion": "anon_detected_mosaic_24",
        "out": "r/metrics/ms/person/anon_detected_mosaic_24.json",
    }
    gallery = anon.metrics_job("ms", "market1501", "gt", "noise_0.5")
    assert gallery["references"] == [["r/embeddings/ms/anon/noise_0.5/market1501_gt.npz", "all", "-",
                                      "-"]]
    assert gallery["query_copies"] == []  # queries are a different set: they stay raw
    assert anon.plan_inputs("ms")["exclusions"] == [
        "d/anon/mosaic_24/market1501_detected/exclusion.json",
        "d/anon/mosaic_24/vis_test_detected/exclusion.json",
        "d/anon/noise_0.5/market1501_detected/exclusion.json",
        "d/anon/noise_0.5/vis_test_detected/exclusion.json"]
    files = anon.metrics_files(["ms"])
    assert files[:3] == ["r/metrics/ms/nonperson/none.json", "r/metrics/ms/person/none.json",
                         "r/metrics/ms/market1501/none.json"]
    assert files[6:9] == ["r/metrics/ms/nonperson/anon_detected_mosaic_24.json",
                          "r/metrics/ms/person/anon_detected_mosaic_24.json",
                          "r/metrics/ms/market1501/anon_detected_mosaic_24.json"]
    assert len(files) == 6 + 2 * 2 * 3
