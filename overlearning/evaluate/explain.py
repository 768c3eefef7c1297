"""AttnLRP heat maps: which pixels of a person query make the model match that person.

For a query image and the gallery image of the same identity that the model ranks first,
the explained score is the cosine similarity of their embeddings; AttnLRP (lxt's efficient
implementation, CP-LRP inside attention, zennit Gamma rules on the patch embedding and the
linear layers) propagates it back to the query's pixels. lxt supports torchvision's
VisionTransformer (not timm's), which is why the study trained torchvision ViT twins.

lxt patches torch.nn classes (LayerNorm, GELU, MultiheadAttention) process-wide and for
good: call :func:`enable_attnlrp` only in a process that does nothing else (the explain
script), never inside a training or test process.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from tqdm import tqdm

from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import read_rgb
from overlearning.evaluate.embeddings import EmbeddingSet
from overlearning.evaluate.figures import save_figure
from overlearning.evaluate.ranking import l2_normalise

CONV_GAMMA = 0.25
LINEAR_GAMMA = 0.05


def enable_attnlrp() -> None:
    """Patch torchvision's ViT building blocks and zennit's hooks for AttnLRP."""
    from lxt.efficient import monkey_patch, monkey_patch_zennit
    from torchvision.models import vision_transformer

    monkey_patch(vision_transformer)
    monkey_patch_zennit()


def check_torchvision_trunk(model: nn.Module, where: str) -> None:
    trunk = getattr(model, "trunk", None)
    if not isinstance(trunk, torchvision.models.VisionTransformer):
        raise WorkflowInputError(where, "AttnLRP needs a torchvision VisionTransformer trunk "
                                        f"(got {type(trunk).__name__}); lxt does not support timm ViTs")


def attnlrp_heatmap(model: nn.Module, image: torch.Tensor, target: torch.Tensor,
                    conv_gamma: float = CONV_GAMMA, linear_gamma: float = LINEAR_GAMMA) -> np.ndarray:
    """(H, W) relevance of each input pixel for cos(model(image), target), scaled to [-1, 1].

    ``image``: (3, H, W) as the model's transform gives it; ``target``: (d,) embedding.
    """
    import zennit.rules as z_rules
    from zennit.composites import LayerMapComposite

    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    x = image.detach().clone()[None].requires_grad_(True)
    composite = LayerMapComposite([
        (nn.Conv2d, z_rules.Gamma(conv_gamma)),
        (nn.Linear, z_rules.Gamma(linear_gamma)),
    ])
    composite.register(model)
    try:
        score = nn.functional.cosine_similarity(model(x), target[None].to(x.dtype), dim=-1).sum()
        score.backward()
    finally:
        composite.remove()
    heat = (x * x.grad).sum(dim=1)[0].detach().cpu().numpy().astype(np.float64)
    scale = np.abs(heat).max()
    return heat / scale if scale > 0 else heat


@dataclass(frozen=True)
class ExplainedPair:
    query: int   # index into the query set
    match: int   # index into the gallery: the first-ranked gallery image of the same identity


def pick_pairs(queries: EmbeddingSet, gallery: EmbeddingSet, count: int) -> list[ExplainedPair]:
    """``count`` queries spread evenly over the (sorted) query set, each with its best match.

    Only queries with a same-identity gallery image (from another camera where cameras are
    known) qualify. Deterministic: the same embeddings always give the same pairs.
    """
    q = l2_normalise(queries.embeddings)
    g = l2_normalise(gallery.embeddings)
    same = queries.labels[:, None] == gallery.labels[None, :]
    known = (queries.cameras[:, None] >= 0) & (gallery.cameras[None, :] >= 0)
    same &= ~(known & (queries.cameras[:, None] == gallery.cameras[None, :]))
    eligible = np.flatnonzero(same.any(axis=1))
    if len(eligible) == 0:
        raise WorkflowInputError("explain", "no query has a matching gallery image")
    chosen = eligible[np.unique(np.linspace(0, len(eligible) - 1, min(count, len(eligible))).round().astype(int))]
    pairs = []
    for qi in chosen:
        sims = np.where(same[qi], q[qi] @ g.T, -np.inf)
        pairs.append(ExplainedPair(int(qi), int(np.argmax(sims))))
    return pairs


def heatmap_figure(query_image: np.ndarray, heat: np.ndarray, match_image: np.ndarray,
                   out: Path | str, title: str) -> Path:
    """Query | relevance (red positive, blue negative) | overlay | the matched gallery image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = heat.shape
    query_small = np.asarray(Image.fromarray(query_image).resize((w, h), Image.BICUBIC))
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.4), layout="constrained")
    axes[0].imshow(query_small)
    axes[0].set_title("query", fontsize=8)
    shown = axes[1].imshow(heat, cmap="bwr", vmin=-1, vmax=1)
    axes[1].set_title("AttnLRP relevance", fontsize=8)
    axes[2].imshow(query_small.mean(axis=2), cmap="gray")
    axes[2].imshow(heat, cmap="bwr", vmin=-1, vmax=1, alpha=0.6)
    axes[2].set_title("relevance over the query", fontsize=8)
    axes[3].imshow(match_image)
    axes[3].set_title("best same-identity gallery match", fontsize=8)
    for ax in axes:
        ax.axis("off")
    # The key to the colours: relevance is scaled so the largest magnitude is 1.
    bar = fig.colorbar(shown, ax=axes[1:3], shrink=0.85, pad=0.02)
    bar.set_label("relevance / max |relevance|\nred raises, blue lowers the similarity",
                  fontsize=7)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, out)


def explain_queries(model: nn.Module, queries: EmbeddingSet, gallery: EmbeddingSet,
                    query_root: Path | str, gallery_root: Path | str,
                    outputs: Sequence[Path | str], device: str = "cpu",
                    label: str = "") -> list[Path]:
    """One heat-map figure per output path, for evenly spread person queries (``label``,
    e.g. the model in words, heads each figure's title)."""
    pairs = pick_pairs(queries, gallery, len(outputs))
    if len(pairs) < len(outputs):
        raise WorkflowInputError(query_root, f"only {len(pairs)} queries with a gallery match, "
                                             f"{len(outputs)} heat maps requested")
    model = model.to(device)
    written = []
    # One AttnLRP backward pass per query: seconds each on a GPU, minutes on a CPU.
    for pair, out in tqdm(list(zip(pairs, outputs, strict=True)), desc="AttnLRP heat maps",
                          unit="query", file=sys.stderr):
        query_path = Path(query_root) / queries.files[pair.query]
        match_path = Path(gallery_root) / gallery.files[pair.match]
        query_rgb = read_rgb(query_path)
        image = model.transform(Image.fromarray(query_rgb)).to(device)
        target = torch.from_numpy(gallery.embeddings[pair.match]).to(device)
        heat = attnlrp_heatmap(model, image, target)
        written.append(heatmap_figure(query_rgb, heat, read_rgb(match_path), out,
                                      f"{label + ': ' if label else ''}query {queries.files[pair.query]} "
                                      f"vs its match {gallery.files[pair.match]}"))
    return written
