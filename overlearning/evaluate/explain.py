"""AttnLRP heat maps: which pixels of a person query make the model match that person.

For a query image and the gallery image of the same identity that the model ranks first,
the explained score (config ``explain.target``) is the cosine similarity of their
embeddings (``similarity``, default) or, as in the authors' code, the L2 norm of the query's
embedding (``norm``: no gallery image involved). AttnLRP (lxt's efficient implementation,
CP-LRP inside attention, zennit Gamma rules on the patch embedding (conv) and the linear
layers) propagates it back to the query's pixels, once per (conv, linear) gamma pair of
``explain.gammas`` (default one pair, 0.25 / 0.05; the authors drew 15: conv 0.1, 0.25,
100 x linear 0, 0.01, 0.05, 0.1, 1). lxt supports torchvision's VisionTransformer (not
timm's), which is why the study trained torchvision ViT twins.

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
from overlearning.core.packs import open_images
from overlearning.evaluate.embeddings import EmbeddingSet
from overlearning.evaluate.figures import save_figure
from overlearning.evaluate.ranking import l2_normalise

CONV_GAMMA = 0.25
LINEAR_GAMMA = 0.05
TARGETS = ("similarity", "norm")
AUTHORS_GAMMAS = tuple((c, lin) for c in (0.1, 0.25, 100.0) for lin in (0.0, 0.01, 0.05, 0.1, 1.0))


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


def explained_score(embedding: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """The scalar AttnLRP explains: cosine similarity to ``target``, or the embedding's L2
    norm when ``target`` is None (the authors' choice)."""
    if target is None:
        return embedding.norm(p=2)
    return nn.functional.cosine_similarity(embedding, target[None].to(embedding.dtype), dim=-1).sum()


def attnlrp_heatmap(model: nn.Module, image: torch.Tensor, target: torch.Tensor | None,
                    conv_gamma: float = CONV_GAMMA, linear_gamma: float = LINEAR_GAMMA) -> np.ndarray:
    """(H, W) relevance of each input pixel for :func:`explained_score`, scaled to [-1, 1].

    ``image``: (3, H, W) as the model's transform gives it; ``target``: (d,) embedding, or
    None to explain the embedding's norm.
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
        score = explained_score(model(x), target)
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


def _build_heatmap_figure(query_image: np.ndarray, heats: Sequence[np.ndarray],
                          gammas: Sequence[tuple[float, float]], match_image: np.ndarray,
                          title: str):
    """Query | relevance (first gamma pair) | overlay | matched gallery image, a colour bar,
    then one map per further gamma pair, five to a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = heats[0].shape
    query_small = np.asarray(Image.fromarray(query_image).resize((w, h), Image.BICUBIC))
    extra = len(heats) - 1
    grid_rows = -(-extra // 5)
    fig = plt.figure(figsize=(11, 3 * (1 + grid_rows)), layout="constrained")
    axes = fig.subplots(1 + grid_rows, 5, squeeze=False)
    first = axes[0]
    first[0].imshow(query_small)
    first[0].set_title("query", fontsize=8)
    shown = first[1].imshow(heats[0], cmap="bwr", vmin=-1, vmax=1)
    first[1].set_title(f"AttnLRP relevance, gamma {gammas[0][0]:g} / {gammas[0][1]:g}", fontsize=8)
    first[2].imshow(query_small.mean(axis=2), cmap="gray")
    first[2].imshow(heats[0], cmap="bwr", vmin=-1, vmax=1, alpha=0.6)
    first[2].set_title("overlay", fontsize=8)
    first[3].imshow(match_image)
    first[3].set_title("best same-identity gallery match", fontsize=8)
    for i, (heat, (conv, linear)) in enumerate(zip(heats[1:], gammas[1:], strict=True)):
        ax = axes[1 + i // 5][i % 5]
        ax.imshow(heat, cmap="bwr", vmin=-1, vmax=1)
        ax.set_title(f"gamma conv {conv:g} / linear {linear:g}", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    # The colour bar sits in the first row's free fifth panel, so the map grid keeps its columns.
    colorbar = fig.colorbar(shown, cax=first[4].inset_axes((0.1, 0.05, 0.1, 0.9)))
    colorbar.set_label("relevance (scaled to max |R| = 1): red raises, blue lowers the score",
                       fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def heatmap_figure(query_image: np.ndarray, heats: Sequence[np.ndarray] | np.ndarray,
                   match_image: np.ndarray, out: Path | str, title: str,
                   gammas: Sequence[tuple[float, float]] = ((CONV_GAMMA, LINEAR_GAMMA),)) -> Path:
    """The heat-map figure (see _build_heatmap_figure), one map per gamma pair."""
    heats = [heats] if isinstance(heats, np.ndarray) else list(heats)
    if len(heats) != len(gammas):
        raise ValueError(f"{len(heats)} heat maps for {len(gammas)} gamma pairs")
    return save_figure(_build_heatmap_figure(query_image, heats, gammas, match_image, title), out)


def explain_queries(model: nn.Module, queries: EmbeddingSet, gallery: EmbeddingSet,
                    query_root: Path | str, gallery_root: Path | str,
                    outputs: Sequence[Path | str], device: str = "cpu",
                    target: str = "similarity",
                    gammas: Sequence[tuple[float, float]] = ((CONV_GAMMA, LINEAR_GAMMA),),
                    label: str = "") -> list[Path]:
    """One heat-map figure per output path, for evenly spread person queries; ``target``
    and ``gammas`` as config ``explain.target`` / ``explain.gammas``; ``label`` (e.g. the
    model in words) heads each figure's title."""
    if target not in TARGETS:
        raise WorkflowInputError("explain.target", f"must be one of {TARGETS}, not {target!r}")
    if not gammas:
        raise WorkflowInputError("explain.gammas", "needs at least one (conv, linear) pair")
    pairs = pick_pairs(queries, gallery, len(outputs))
    if len(pairs) < len(outputs):
        raise WorkflowInputError(query_root, f"only {len(pairs)} queries with a gallery match, "
                                             f"{len(outputs)} heat maps requested")
    # The roots are the sets' packs (or folders): the images the embeddings were made of.
    query_images, gallery_images = open_images(query_root), open_images(gallery_root)
    model = model.to(device)
    q_unit, g_unit = l2_normalise(queries.embeddings), l2_normalise(gallery.embeddings)
    written = []
    # One AttnLRP backward pass per query: seconds each on a GPU, minutes on a CPU.
    for pair, out in tqdm(list(zip(pairs, outputs, strict=True)), desc="AttnLRP heat maps",
                          unit="query", file=sys.stderr):
        query_rgb = query_images.read_rgb(str(queries.files[pair.query]))
        image = model.transform(Image.fromarray(query_rgb)).to(device)
        match_embedding = torch.from_numpy(gallery.embeddings[pair.match]).to(device)
        explained = match_embedding if target == "similarity" else None
        heats = [attnlrp_heatmap(model, image, explained, conv, linear) for conv, linear in gammas]
        similarity = float(q_unit[pair.query] @ g_unit[pair.match])
        with torch.no_grad():
            score = float(explained_score(model(image[None]), explained))
        what = "cosine similarity" if target == "similarity" else "embedding norm"
        title = (f"{label + ': ' if label else ''}{queries.files[pair.query]} vs "
                 f"{gallery.files[pair.match]}: cosine similarity {similarity:.4f}; "
                 f"explained: {what} = {score:.4f}")
        match_rgb = gallery_images.read_rgb(str(gallery.files[pair.match]))
        written.append(heatmap_figure(query_rgb, heats, match_rgb, out, title, gammas))
    return written
