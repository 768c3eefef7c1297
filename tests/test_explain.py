"""AttnLRP heat maps on a real tiny torchvision ViT (lxt + zennit).

lxt patches torch.nn classes process-wide, so everything that enables it runs in a child
process; the rest (pair choice, the trunk check) runs here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import pack_of_files
from overlearning.evaluate.embeddings import (
    EmbeddingSet,
    embed_items,
    embedding_set_from_items,
    items_for_set,
    save_embedding_set,
)
from overlearning.evaluate.explain import (
    AUTHORS_GAMMAS,
    _build_heatmap_figure,
    check_torchvision_trunk,
    pick_pairs,
)
from overlearning.models.embedder import build_embedding_model, save_embedding_model

REPO = Path(__file__).resolve().parent.parent
TINY_TV = {"kind": "torchvision", "name": "vit_b_16", "weights": None,
           "overrides": {"num_layers": 2, "hidden_dim": 64, "num_heads": 2, "mlp_dim": 128,
                         "image_size": 64}}


def _packed(folder: Path) -> Path:
    """The folder's images as the pack the datasets rules would write beside it."""
    pack = folder.with_name(folder.name + ".zip")
    pack_of_files(pack, {p.name: p for p in folder.iterdir()})
    return pack


def _folder(root: Path, names: list[str], seed: int) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(root / name)
    return root


def test_pick_pairs_spreads_queries_and_takes_the_best_other_camera_match():
    q = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], np.float32)
    g = np.array([[1, 0.1], [0.9, 0.5], [0, 1], [1, 0]], np.float32)
    queries = EmbeddingSet(q, np.array([1, 2, 3, 4]), np.array(list("abcd")), np.ones(4, bool),
                           np.array([1, 1, 1, 1]))
    gallery = EmbeddingSet(g, np.array([1, 1, 2, 1]), np.array(list("wxyz")), np.ones(4, bool),
                           np.array([2, 2, 2, 1]))
    pairs = pick_pairs(queries, gallery, 5)
    # Only queries 0 (identity 1) and 1 (identity 2) have a match; for query 0 the gallery
    # image z (index 3) is the same camera and does not count: best other is w (index 0).
    assert [(p.query, p.match) for p in pairs] == [(0, 0), (1, 2)]
    with pytest.raises(WorkflowInputError):
        pick_pairs(queries.select(np.array([False, False, True, True])), gallery, 2)


def test_timm_trunk_is_refused():
    timm_cfg = {"kind": "timm", "name": "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k",
                "overrides": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32}}
    with pytest.raises(WorkflowInputError, match="torchvision VisionTransformer"):
        check_torchvision_trunk(build_embedding_model(timm_cfg, 4), "models/ms")


# Runs in a child process: heat-map properties, then the explain script's main() on files.
CHILD = """
import json, runpy, sys, torch
from overlearning.evaluate.explain import enable_attnlrp, attnlrp_heatmap
from overlearning.models.embedder import build_embedding_model
enable_attnlrp()
torch.manual_seed(0)
model = build_embedding_model(json.loads(sys.argv[1]), 8).eval()
image, target = torch.randn(3, 64, 64), torch.randn(8)
heat = attnlrp_heatmap(model, image, target)
again = attnlrp_heatmap(model, image, target)
flipped = attnlrp_heatmap(model, image, -target)
norm = attnlrp_heatmap(model, image, None)
other_gamma = attnlrp_heatmap(model, image, target, 100.0, 1.0)
def corr(a, b):
    return float(((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std()))
stats = {"shape": list(heat.shape), "max": float(abs(heat).max()), "std": float(heat.std()),
         "same": bool((heat == again).all()), "corr_flipped": corr(heat, flipped),
         "norm_max": float(abs(norm).max()), "norm_differs": bool(abs(norm - heat).max() > 1e-3),
         "gamma_differs": bool(abs(other_gamma - heat).max() > 1e-3)}
explain = runpy.run_path(sys.argv[2])
explain["main"](sys.argv[3:])
print(json.dumps(stats))
"""


def test_heat_maps_and_the_explain_script(tmp_path):
    torch.manual_seed(0)
    model = build_embedding_model(TINY_TV, 8).eval()
    save_embedding_model(model, tmp_path / "model")
    query = _folder(tmp_path / "query", ["0001_c1_a.jpg", "0002_c1_a.jpg", "0003_c1_a.jpg"], 0)
    gallery = _folder(tmp_path / "gallery", ["0001_c2_b.jpg", "0002_c2_b.jpg", "0003_c1_b.jpg"], 1)
    for folder, name in ((query, "q.npz"), (gallery, "g.npz")):
        items = items_for_set("pack", _packed(folder))
        save_embedding_set(tmp_path / name, embedding_set_from_items(items, embed_items(model, items, 4)))
    outs = [tmp_path / "explain" / f"query_{i}.png" for i in range(2)]
    # The authors' options: the embedding norm, two gamma pairs (two maps per figure).
    args = ["--model-dir", str(tmp_path / "model"), "--trunk", json.dumps(TINY_TV),
            "--embedding-dim", "8", "--queries", str(tmp_path / "q.npz"),
            "--gallery", str(tmp_path / "g.npz"), "--query-root", str(query),
            "--gallery-root", str(gallery), "--target", "norm", "--gamma", "0.25", "0.05",
            "--gamma", "100", "1", "--out", *map(str, outs)]
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(TINY_TV),
                           str(REPO / "scripts" / "explain.py"), *args],
                          check=True, cwd=REPO, capture_output=True, text=True, timeout=300)
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["shape"] == [64, 64]
    assert stats["max"] == pytest.approx(1.0)
    assert stats["std"] > 0.01 and stats["same"]
    # Explaining similarity to the opposite target flips the evidence.
    assert stats["corr_flipped"] < 0
    # The norm target and another gamma pair give other maps, scaled the same way.
    assert stats["norm_max"] == pytest.approx(1.0)
    assert stats["norm_differs"] and stats["gamma_differs"]
    for out in outs:
        image = np.asarray(Image.open(out).convert("RGB")).astype(int)
        # The relevance panel is drawn in red/blue: strongly coloured pixels exist.
        assert (np.abs(image[..., 0] - image[..., 2]) > 80).sum() > 100


def test_heat_map_figure_has_a_colour_bar_the_similarity_and_one_map_per_gamma():
    rng = np.random.default_rng(0)
    query = rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)
    heats = [rng.uniform(-1, 1, (16, 16)) for _ in AUTHORS_GAMMAS]
    fig = _build_heatmap_figure(query, heats, AUTHORS_GAMMAS, query, "q vs g: cosine similarity 0.9123")
    try:
        assert len(AUTHORS_GAMMAS) == 15
        every_axes = fig.axes + [child for ax in fig.axes for child in ax.child_axes]
        colour_bars = [ax for ax in every_axes if getattr(ax, "_colorbar", None) is not None]
        assert len(colour_bars) == 1 and colour_bars[0].get_ylim() == (-1.0, 1.0)
        assert "0.9123" in fig._suptitle.get_text()
        maps = [ax for ax in fig.axes if any(im.get_cmap().name == "bwr" for im in ax.images)]
        assert len(maps) == 1 + 1 + 14  # first map, its overlay, the other 14 pairs
        titles = {ax.get_title() for ax in fig.axes}
        assert "gamma conv 100 / linear 1" in titles
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
