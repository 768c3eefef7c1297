"""The three losses against values worked out by hand on a four-element batch.

Batch (2-d embeddings, cosine similarities in brackets): e0 = (1, 0), e1 = (0.8, 0.6),
e2 = (0, 1), e3 = (-0.6, 0.8); s01 = 0.8, s02 = 0, s03 = -0.6, s12 = 0.6, s13 = 0,
s23 = 0.8. Labels 0, 0, 7, 7 (7 is a person in the person-aware losses).
MS (alpha 2, beta 50, base 0.5) per anchor: pos = 1/2 log(1 + sum exp(-2 (s - 0.5))),
neg = 1/50 log(1 + sum exp(50 (s - 0.5))), then the mean over the four anchors.
"""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.losses import MultiSimilarityLoss

from overlearning.models.losses import (
    LoggedMultiSimilarity,
    MultiSimilarityCenterLoss,
    MultiSimilarityConfusionLoss,
    make_loss,
)

MS = {"alpha": 2.0, "beta": 50.0, "base": 0.5}
EMB = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 7, 7])

POS = 0.5 * math.log(1 + math.exp(-2 * (0.8 - 0.5)))          # every anchor's one positive
NEG_FAR = math.log(1 + math.exp(50 * (0 - 0.5)) + math.exp(50 * (-0.6 - 0.5))) / 50  # e0, e3
NEG_NEAR = math.log(1 + math.exp(50 * (0.6 - 0.5)) + math.exp(50 * (0 - 0.5))) / 50  # e1, e2
MS_HAND = (4 * POS + 2 * NEG_FAR + 2 * NEG_NEAR) / 4
# Person anchors (e2, e3) lose their positive pair.
MS_PERSONS_HAND = (2 * POS + 2 * NEG_FAR + 2 * NEG_NEAR) / 4


def test_multisimilarity_matches_hand_value() -> None:
    loss = LoggedMultiSimilarity(**MS)
    value = loss(EMB, LABELS)
    assert value.item() == pytest.approx(MS_HAND, rel=1e-9)
    assert value.item() == pytest.approx(MultiSimilarityLoss(**MS)(EMB, LABELS).item(), rel=1e-12)
    assert loss.terms["ms_loss"].item() == pytest.approx(MS_HAND, rel=1e-9)


def test_confusion_matches_hand_value() -> None:
    # Person rows: e2 has the pair (e2, e3) at 0.8 > margin 0.5, e3 has no later partner.
    loss = MultiSimilarityConfusionLoss([7], weight=4.0, gamma=10.0, margin=0.5, **MS)
    rows = [math.log(1 + math.exp(10 * (0.8 - 0.5))), 0.0]
    confusion = 4.0 / 10.0 * sum(rows) / len(rows)
    value = loss(EMB, LABELS)
    assert value.item() == pytest.approx(MS_PERSONS_HAND + confusion / 4, rel=1e-9)
    assert loss.terms["ms_loss"].item() == pytest.approx(MS_PERSONS_HAND, rel=1e-9)
    assert loss.terms["confusion_loss"].item() == pytest.approx(confusion / 4, rel=1e-9)
    assert (loss.terms["person_pairs_above"].item(), loss.terms["person_pairs"].item()) == (1, 1)


def test_confusion_term_is_zero_when_no_person_pair_exceeds_the_margin() -> None:
    loss = MultiSimilarityConfusionLoss([7], weight=4.0, gamma=10.0, margin=0.9, **MS)
    value = loss(EMB, LABELS)
    assert loss.terms["confusion_loss"].item() == 0.0
    assert (loss.terms["person_pairs_above"].item(), loss.terms["person_pairs"].item()) == (0, 1)
    assert value.item() == pytest.approx(MS_PERSONS_HAND, rel=1e-9)
    embeddings = EMB.clone().requires_grad_(True)
    term = loss.confusion(embeddings[2:])[0]
    term.backward()
    assert torch.count_nonzero(embeddings.grad) == 0


def _pairwise(embeddings: torch.Tensor) -> torch.Tensor:
    normed = torch.nn.functional.normalize(embeddings, dim=1)
    sim = normed @ normed.T
    return sim[torch.ones_like(sim, dtype=torch.bool).triu(1)]


def test_confusion_gradient_pushes_person_pairs_apart() -> None:
    generator = torch.Generator().manual_seed(0)
    persons = torch.randn(1, 8, generator=generator) + 0.2 * torch.randn(6, 8, generator=generator)
    loss = MultiSimilarityConfusionLoss([7], weight=20.0, gamma=30.0, margin=0.0, **MS)
    before = _pairwise(persons)
    assert before.min() > 0.5  # all pairs above the margin
    moved = persons.clone().requires_grad_(True)
    term, above, pairs = loss.confusion(moved)
    assert above.item() == pairs.item() == 15
    term.backward()
    after = _pairwise(persons - 0.05 * moved.grad)
    assert after.mean() < before.mean()
    assert after.max() < before.max()
    # Two persons: the step on each moves it away from the other.
    pair = persons[:2].clone().requires_grad_(True)
    loss.confusion(pair)[0].backward()
    assert (_pairwise(persons[:2] - 0.05 * pair.grad) < _pairwise(persons[:2])).all()


def _confusion_by_loops(person_emb: torch.Tensor, weight: float, gamma: float,
                        margin: float) -> float:
    """The authors' definition, one pair at a time (reference for the vectorised code)."""
    normed = torch.nn.functional.normalize(person_emb, dim=1).tolist()
    rows = []
    for i in range(len(normed)):
        total = 1.0
        for j in range(i + 1, len(normed)):
            s = sum(a * b for a, b in zip(normed[i], normed[j], strict=True))
            if s > margin:
                total += math.exp(gamma * (s - margin))
        rows.append(math.log(total))
    return weight / gamma * sum(rows) / len(rows)


def test_vectorised_confusion_equals_pair_loops() -> None:
    generator = torch.Generator().manual_seed(1)
    person_emb = torch.randn(12, 6, generator=generator, dtype=torch.float64)
    loss = MultiSimilarityConfusionLoss([7], weight=23.75, gamma=31.86, margin=0.0126, **MS)
    term = loss.confusion(person_emb)[0]
    assert term.item() == pytest.approx(_confusion_by_loops(person_emb, 23.75, 31.86, 0.0126),
                                        rel=1e-9)


def test_center_matches_hand_value_and_moves_the_center() -> None:
    # Person embeddings scaled by 2: the squared distance uses raw (unnormalised) vectors.
    embeddings = EMB.clone()
    embeddings[2:] *= 2
    loss = MultiSimilarityCenterLoss([7], weight=3.0, center_lr=0.1, embedding_dim=2, **MS)
    loss.double()
    value = loss(embeddings, LABELS)
    spread = (4.0 + 4.0) / 2  # ||2 e2||^2 = ||2 e3||^2 = 4, centre at zero
    assert value.item() == pytest.approx(MS_PERSONS_HAND + 3.0 * spread, rel=1e-9)
    assert loss.terms["center_loss"].item() == pytest.approx(3.0 * spread)
    # c <- c + lr * 2 * mean(e - c) = 0.1 * 2 * ((0, 2) + (-1.2, 1.6)) / 2
    assert loss.center.tolist() == pytest.approx([0.1 * -1.2, 0.1 * 3.6])
    loss.eval()
    loss(embeddings, LABELS)
    assert loss.center.tolist() == pytest.approx([0.1 * -1.2, 0.1 * 3.6])


def test_make_loss_builds_each_setting() -> None:
    ms = make_loss({"loss": "ms"}, MS, [], 2)
    assert isinstance(ms, LoggedMultiSimilarity)
    confusion = make_loss({"loss": "confusion", "weight": 1.0, "gamma": 2.0, "margin": 0.1},
                          MS, [7, 9], 2)
    assert confusion.person_labels.tolist() == [7, 9]
    center = make_loss({"loss": "center", "weight": 1.0, "center_lr": 0.1}, MS, [7], 5)
    assert center.center.shape == (5,)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss({"loss": "triplet"}, MS, [], 2)
