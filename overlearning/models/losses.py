"""The three training objectives of the study, as pytorch-metric-learning losses.

- ``ms``: pytorch-metric-learning's MultiSimilarityLoss (cosine similarity).
- ``confusion``: MS in which person ("forbidden") anchors get no positive pairs, plus a
  term that pushes person embeddings apart: for the person pairs i < j of the batch whose
  cosine similarity s_ij exceeds ``margin``, per person row i
  ``log(1 + sum_j exp(gamma (s_ij - margin)))``; the mean over the person rows times
  ``weight / gamma`` is spread over the batch's per-element losses (each gets 1/B of it),
  so that after MS's mean reduction the term adds ``weight / gamma * mean_i(...) / B``.
  This is the authors' formulation, under which the paper's weight/gamma/margin were tuned.
- ``center``: the same masked MS plus ``weight * mean_i ||e_i - c||^2`` over the person
  embeddings (raw, not normalised), added to every element (so it adds that much after the
  mean); the centre c starts at zero and, in training mode, moves after each forward by
  plain gradient descent with its own learning rate on ``mean_i ||e_i - c||^2``.

Everything is vectorised over the batch (no Python loop over anchors or pairs). Each loss
keeps the detached values of its terms from the last forward in ``terms`` for logging.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from pytorch_metric_learning.losses import MultiSimilarityLoss
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

LOSSES = ("ms", "confusion", "center")


class LoggedMultiSimilarity(MultiSimilarityLoss):
    """Plain MultiSimilarity that also reports its value in ``terms``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, *args: Any,
                **kwargs: Any) -> torch.Tensor:
        loss = super().forward(embeddings, labels, *args, **kwargs)
        self.terms = {"ms_loss": loss.detach()}
        return loss


class PersonAwareMultiSimilarity(MultiSimilarityLoss):
    """MultiSimilarity where anchors with a person label have no positives.

    Persons are still negatives of every other label, so MS pushes them away from other
    objects but never pulls two crops of a person together. Subclasses add a person term
    through :meth:`person_term`.
    """

    def __init__(self, person_labels: Iterable[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        labels = sorted({int(x) for x in person_labels})
        self.register_buffer("person_labels", torch.tensor(labels, dtype=torch.long))
        self.terms: dict[str, torch.Tensor] = {}

    def is_person(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.isin(labels, self.person_labels.to(labels.device))

    def compute_loss(self, embeddings: torch.Tensor, labels: torch.Tensor,
                     indices_tuple: Any, ref_emb: torch.Tensor,
                     ref_labels: torch.Tensor) -> dict[str, Any]:
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)
        indices_tuple = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        if all(len(x) <= 1 for x in indices_tuple):
            self.terms = {}
            return self.zero_losses()
        mat = self.distance(embeddings, ref_emb)
        a1, p, a2, n = indices_tuple
        pos_mask = torch.zeros_like(mat)
        neg_mask = torch.zeros_like(mat)
        pos_mask[a1, p] = 1
        neg_mask[a2, n] = 1
        persons = self.is_person(labels)
        pos_mask[persons] = 0
        loss = self._compute_loss(mat, pos_mask, neg_mask)
        per_element = loss["loss"]["losses"]
        extra, terms = self.person_term(embeddings[persons], len(labels))
        loss["loss"]["losses"] = per_element + extra
        self.terms = {"ms_loss": per_element.detach().mean(), **terms}
        return loss

    def person_term(self, person_emb: torch.Tensor,
                    batch_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """What to add to each per-element loss, and the values to log."""
        return person_emb.new_zeros(()), {}


class MultiSimilarityConfusionLoss(PersonAwareMultiSimilarity):
    """MS + confusion term that pushes person embeddings apart (see module docstring)."""

    def __init__(self, person_labels: Iterable[int], weight: float, gamma: float,
                 margin: float, **kwargs: Any) -> None:
        super().__init__(person_labels, **kwargs)
        self.weight = float(weight)
        self.gamma = float(gamma)
        self.margin = float(margin)

    def confusion(self, person_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weighted confusion term, person pairs above the margin, person pairs)."""
        n = len(person_emb)
        if n < 2:
            zero = person_emb.new_zeros(())
            return zero, zero, zero
        sim = self.distance(person_emb, person_emb)
        upper = torch.ones_like(sim, dtype=torch.bool).triu(diagonal=1)
        above = upper & (sim > self.margin)
        rows = lmu.logsumexp(self.gamma * (sim - self.margin), keep_mask=above, add_one=True)
        term = self.weight / self.gamma * rows.mean()
        return term, above.sum().to(sim.dtype), upper.sum().to(sim.dtype)

    def person_term(self, person_emb: torch.Tensor,
                    batch_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        term, above, pairs = self.confusion(person_emb)
        # Pair counts, not the batch's fraction: an epoch's fraction weighs every pair alike.
        logged = {"confusion_loss": term.detach() / batch_size,
                  "person_pairs_above": above, "person_pairs": pairs}
        return term / batch_size, logged


class MultiSimilarityCenterLoss(PersonAwareMultiSimilarity):
    """MS + pull of person embeddings towards one centre with its own learning rate."""

    def __init__(self, person_labels: Iterable[int], weight: float, center_lr: float,
                 embedding_dim: int, **kwargs: Any) -> None:
        super().__init__(person_labels, **kwargs)
        self.weight = float(weight)
        self.center_lr = float(center_lr)
        self.register_buffer("center", torch.zeros(embedding_dim))

    def person_term(self, person_emb: torch.Tensor,
                    batch_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if len(person_emb) == 0:
            zero = person_emb.new_zeros(())
            return zero, {"center_loss": zero}
        center = self.center.to(person_emb.dtype)
        spread = (person_emb - center).pow(2).sum(dim=1).mean()
        if self.training and torch.is_grad_enabled():
            # d/dc mean ||e - c||^2 = -2 mean(e - c); the loss above keeps the old centre.
            with torch.no_grad():
                step = 2.0 * (person_emb.detach() - center).mean(dim=0)
                self.center.add_(self.center_lr * step.to(self.center.dtype))
        term = self.weight * spread
        return term, {"center_loss": term.detach()}


def make_loss(setting: Mapping[str, Any], ms_params: Mapping[str, float],
              person_labels: Iterable[int], embedding_dim: int) -> MultiSimilarityLoss:
    """The loss a training setting asks for (``setting["loss"]`` in LOSSES)."""
    ms = {"alpha": float(ms_params["alpha"]), "beta": float(ms_params["beta"]),
          "base": float(ms_params["base"])}
    kind = setting["loss"]
    if kind == "ms":
        return LoggedMultiSimilarity(**ms)
    if kind == "confusion":
        return MultiSimilarityConfusionLoss(person_labels, weight=setting["weight"],
                                            gamma=setting["gamma"], margin=setting["margin"],
                                            **ms)
    if kind == "center":
        return MultiSimilarityCenterLoss(person_labels, weight=setting["weight"],
                                         center_lr=setting["center_lr"],
                                         embedding_dim=embedding_dim, **ms)
    raise ValueError(f"unknown loss {kind!r} (one of {LOSSES})")
