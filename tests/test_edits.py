"""xai_core.edits: regions on hand-built shapes, remove and keep as complements, the prediction table
against the model called directly, top-k regions as the deletion step, pixel ranks, JSON round trip
and refusal."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xai_core.edits import (Box, Cells, Edit, Polygon, TopK, apply_edits, edits_from_json, edits_to_json,
                            occluder_positions_at, pixel_report, prediction_change, region_from_selection,
                            region_mask, rise_masks_at, topk_curve, topk_region)
from xai_core.engine import Engine
from xai_core.errors import ParameterError
from xai_core.metrics.faithfulness import saliency_ranks
from xai_core.replacements import replacement_image


def test_box_polygon_and_cells_masks_on_hand_built_shapes():
    box = Box(2, 3, 9, 7).mask(16, 16, {})
    expected = np.zeros((16, 16), bool)
    expected[3:8, 2:10] = True
    assert (box == expected).all()
    square = Polygon(((2, 3), (9, 3), (9, 7), (2, 7))).mask(16, 16, {})
    assert (square == expected).all()
    triangle = Polygon(((0, 0), (15, 0), (0, 15))).mask(16, 16, {})
    rows, cols = np.indices((16, 16))
    assert (triangle == (rows + cols <= 15)).all()  # the pixels on or under the diagonal x + y = 15
    cells = Cells(frozenset({(0, 1), (3, 3)}), 4).mask(16, 16, {})
    assert cells.sum() == 32 and cells[0:4, 4:8].all() and cells[12:16, 12:16].all()
    assert (Cells(frozenset({(0, 1)}), 4).toggled(0, 1).mask(16, 16, {}) == 0).all()


def test_region_mask_is_the_union_and_selection_events_become_regions():
    edits = [Edit(Box(0, 0, 3, 3)), Edit(Box(10, 10, 15, 15), mode="keep")]
    assert region_mask(edits, 16, 16).sum() == 16 + 36
    assert region_from_selection({"box": [{"x": [9.2, 2.0], "y": [3.0, 7.5]}], "lasso": [], "points": []}) \
        == Box(2.0, 3.0, 9.2, 7.5)
    lasso = region_from_selection({"box": [], "lasso": [{"x": list(range(100)), "y": [0] * 50 + [9] * 50}]})
    assert isinstance(lasso, Polygon) and len(lasso.points) == 24 and lasso.points[0] == (0, 0)
    assert region_from_selection({"box": [], "lasso": [], "points": [{"x": 1, "y": 2}]}) is None


def test_remove_and_keep_are_complements(embedded_random, image64):
    x = image64
    region = Box(8, 8, 40, 30)
    removed = apply_edits(embedded_random, x, [Edit(region, replacement="grey")])
    kept = apply_edits(embedded_random, x, [Edit(region, mode="keep", replacement="grey")])
    mask = torch.from_numpy(region.mask(64, 64, {}))
    assert torch.equal(removed[:, mask], torch.zeros_like(removed[:, mask]))   # grey is 0 in normalised space
    assert torch.equal(removed[:, ~mask], x[:, ~mask])
    assert torch.equal(kept[:, mask], x[:, mask]) and torch.equal(kept[:, ~mask], torch.zeros_like(kept[:, ~mask]))
    assert torch.allclose(removed + kept, x)
    black = replacement_image(embedded_random, x, "black")
    assert torch.allclose(apply_edits(embedded_random, x, [Edit(region)])[:, mask], black[:, mask])


def test_prediction_change_equals_the_model_called_directly(embedded, dataset_input):
    x = dataset_input
    edited = apply_edits(embedded, x, [Edit(Box(0, 0, 63, 31), replacement="blur")])
    rows = prediction_change(embedded, x, edited, k=5)
    with torch.no_grad():
        before, after = embedded.module(x[None])[0], embedded.module(edited[None])[0]
    top = set(before.topk(5).indices.tolist()) | set(after.topk(5).indices.tolist())
    assert {r["index"] for r in rows} == top
    assert rows[0]["index"] == int(before.argmax()) and rows[0]["rank_before"] == 1
    for r in rows:
        c = r["index"]
        assert r["logit_before"] == pytest.approx(float(before[c]), abs=1e-5)
        assert r["logit_change"] == pytest.approx(float(after[c] - before[c]), abs=1e-5)
        assert r["probability_after"] == pytest.approx(float(after.softmax(-1)[c]), abs=1e-6)
        assert r["rank_after"] == 1 + int((after > after[c]).sum())


def test_topk_region_sizes_and_the_deletion_step(embedded_random, image64):
    heatmap = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    for k, count in ((0, 0), (10, 409), (25, 1024), (100, 4096)):
        region = topk_region(heatmap, k)
        assert region.sum() == count
        assert heatmap[region].min(initial=np.inf) >= heatmap[~region].max(initial=-np.inf)
    ties = np.zeros((4, 4), np.float32)
    assert (topk_region(ties, 25).ravel() == (np.arange(16) < 4)).all()  # ties in raster order
    assert (topk_region(heatmap, 30) == (saliency_ranks(torch.from_numpy(heatmap)[None])[0] < 1228).numpy()).all()
    # the curve over k is the deletion/insertion curve, each point the edited image's probability
    curve = topk_curve(embedded_random, image64, heatmap, 3, mode="remove", replacement="black",
                       engine=Engine("cpu"), steps=4)
    for j, k in enumerate((0, 25, 50, 75, 100)):
        edited = apply_edits(embedded_random, image64, [Edit(TopK("m", k))], {"m": heatmap})
        with torch.no_grad():
            p = embedded_random.module(edited[None]).softmax(-1)[0, 3]
        assert curve[j] == pytest.approx(float(p), abs=1e-5)
    kept = topk_curve(embedded_random, image64, heatmap, 3, mode="keep", replacement="blur", engine=Engine("cpu"),
                      steps=2)
    edited = apply_edits(embedded_random, image64, [Edit(TopK("m", 50), mode="keep", replacement="blur")],
                         {"m": heatmap})
    with torch.no_grad():
        assert kept[1] == pytest.approx(float(embedded_random.module(edited[None]).softmax(-1)[0, 3]), abs=1e-5)


def test_pixel_report_on_a_hand_built_map():
    heatmap = np.arange(16, dtype=np.float32).reshape(4, 4)  # value v has v pixels below it
    report = pixel_report({"ramp": heatmap, "flat": np.ones((4, 4))}, 2, 1)
    assert report["ramp"] == {"value": 9.0, "percentile": 100 * 9.5 / 16, "rank": 7}
    assert report["flat"]["percentile"] == 50.0 and report["flat"]["rank"] == 1
    with pytest.raises(ParameterError):
        pixel_report({"ramp": heatmap}, 4, 0)


def test_occluder_positions_covering_a_pixel():
    grid = np.array([[0.9, 0.5], [0.2, 0.8]])
    found = occluder_positions_at(grid, 1.0, [0, 4], [0, 4], 8, 5, 6, top=3)
    assert [(r["top"], r["left"]) for r in found] == [(4, 0), (0, 4), (4, 4)]  # drops 0.8, 0.5, 0.2
    assert found[0]["drop"] == pytest.approx(0.8)
    assert [(r["top"], r["left"]) for r in occluder_positions_at(grid, 1.0, [0, 4], [0, 4], 8, 2, 2)] == [(0, 0)]


def test_json_round_trip_and_refusals():
    edits = [Edit(Box(1, 2, 30.5, 40)), Edit(Polygon(((0, 0), (10, 0), (5, 9))), mode="keep", replacement="blur"),
             Edit(Cells(frozenset({(1, 2)}), 8), replacement="noise", seed=3), Edit(TopK("gradcam", 15.0))]
    assert edits_from_json(edits_to_json(edits)) == edits
    assert edits_from_json("[]") == []
    for bad, says in (("{", "not valid JSON"), ('{"box":[1,2,3,4]}', "JSON list"), ("[3]", "JSON object"),
                      ('[{"box":[1,2,3]}]', "x0, y0, x1, y1"), ('[{"box":[5,2,3,4]}]', "x0 ≤ x1"),
                      ('[{"box":[1,2,3,4],"mode":"erase"}]', "mode"), ('[{"box":[1,2,3,4],"evil":1}]', "unknown"),
                      ('[{"box":[1,2,3,4],"replacement":"fog"}]', "replacement"), ('[{"top_k":200,"map":"x"}]', "100"),
                      ('[{"polygon":[[0,0],[1,1]]}]', "3 to"), ('[{"box":["a",2,3,4]}]', "float"),
                      ('[{"box":[1,2,3,4],"polygon":[[0,0],[1,1],[2,0]]}]', "exactly one"),
                      ('[{"box":[1,2,3,1e400]}]', "finite"), ('[{"top_k":5}]', "map")):
        with pytest.raises(ParameterError, match=says):
            edits_from_json(bad)
    with pytest.raises(ParameterError, match="not on the page"):
        region_mask([Edit(TopK("gradcam", 5))], 8, 8, {})


def test_rise_masks_at_a_pixel_are_the_runs_masks_ranked_by_the_models_score(embedded_random, image64):
    from xai_core.methods.rise import sample_masks

    settings = dict(shape="binary", cell=8, p=0.5, seed=1, fill="grey")
    found = rise_masks_at(embedded_random, image64, 2, 30, 12, engine=Engine("cpu"), n=16, top=3, **settings)
    masks = sample_masks(n=16, size=(64, 64), **{k: settings[k] for k in ("shape", "cell", "p", "seed")})
    with torch.no_grad():
        scores = embedded_random.module(image64 * masks[:, None]).softmax(-1)[:, 2]  # grey is 0: x·M
    keeping = [i for i in scores.argsort(descending=True).tolist() if masks[i, 30, 12] >= 0.5][:3]
    removing = [i for i in scores.argsort().tolist() if masks[i, 30, 12] < 0.5][:3]
    assert [r["index"] for r in found["keeping"]] == keeping
    assert [r["index"] for r in found["removing"]] == removing
    assert found["keeping"][0]["probability"] == pytest.approx(float(scores[keeping[0]]), abs=1e-5)
    assert np.array_equal(found["removing"][0]["mask"], masks[removing[0]].numpy())
