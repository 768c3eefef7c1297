"""Fill the weights cache for the detector (GroundingDINO + its BERT) and the segmenter (SAM).

``source="hub"`` runs where the network is (the login node): it downloads the published
GroundingDINO Swin-T checkpoint, ``bert-base-uncased`` and SAM ViT-B, checks that each fits
the configured architecture, and stores them as safetensors (no pickle reaches a compute
node). ``source="random"`` writes tiny seeded random weights of the same architectures
(shrunk by ``models.<x>.overrides``) and a tiny BERT whose vocabulary covers every prompt, for
tests and the demo. Layout: see ``overlearning.models.detectors``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from overlearning.core.errors import WorkflowInputError
from overlearning.core.hashing import sha256_file
from overlearning.core.seeding import seed_everything
from overlearning.models.detectors import (
    GD_BUILD,
    GD_DIR,
    GD_TEXT_ENCODER,
    GD_WEIGHTS,
    SAM_BUILD,
    SAM_DIR,
    SAM_WEIGHTS,
    build_grounding_dino,
    build_record,
    build_sam,
)

# Words of the 40 YouTube-VIS prompts and of garment prompts, kept whole in the tiny
# vocabulary so they tokenize as one piece each (as in BERT); letters and "##" letters make
# any other prompt tokenizable too, without [UNK].
PROMPT_WORDS = (
    "a an airplane bear bird boat car cat cow deer dog duck earless seal elephant fish flying "
    "disc fox frog giant panda giraffe horse leopard lizard monkey motorbike mouse parrot person "
    "rabbit shark skateboard snake snowboard squirrel surfboard tennis racket tiger train truck "
    "turtle whale zebra shirt t jacket coat sweater dress top blouse tee cardigan hoodie "
    "sweatshirt vest tank polo golf"
).split()
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = list(".?,-'!:;()/&")
# A BERT just big enough to feed GroundingDINO's text side (feat_map adapts the width).
TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 512}


def tiny_vocab(words: Iterable[str] = PROMPT_WORDS) -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces = [f"##{t}" for t in letters]
    # dict.fromkeys: one entry per token, first position kept (a duplicate leaves a hole).
    return list(dict.fromkeys([*SPECIAL_TOKENS, *PUNCTUATION, *letters, *pieces,
                               *(w.lower() for w in words)]))


def _save_state(model: Any, path: Path) -> None:
    from safetensors.torch import save_file

    # GroundingDINO shares its box head between modules; safetensors wants one owner per
    # tensor, so every entry gets its own copy (loading restores the sharing).
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def write_tiny_bert(directory: Path, seed: int) -> None:
    """A randomly initialised BertModel and a tokenizer whose vocab covers the prompts."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(directory))
    seed_everything(seed)
    BertModel(BertConfig(vocab_size=len(vocab), **TINY_BERT)).save_pretrained(str(directory))


def _download(url: str, dest: Path) -> None:
    import torch

    torch.hub.download_url_to_file(url, str(dest), progress=True)


def _torch_state(path: Path) -> dict[str, Any]:
    """A published .pth read without running pickled code (weights_only)."""
    import torch

    # Some research checkpoints carry their argparse options beside the weights.
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WorkflowInputError(path, f"not a weights-only torch checkpoint ({exc})") from exc
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise WorkflowInputError(path, "checkpoint holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _fit(model: Any, state: dict[str, Any], where: Path) -> None:
    state = {k: v for k, v in state.items() if not k.endswith("embeddings.position_ids")}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WorkflowInputError(where, f"checkpoint does not fit the configured architecture "
                                        f"(missing {result.missing_keys[:5]}, unexpected "
                                        f"{result.unexpected_keys[:5]})")


def _hub_grounding_dino(model_cfg: Mapping[str, Any], out: Path, scratch: Path) -> None:
    from transformers import AutoTokenizer, BertModel

    text_dir = out / "text_encoder"
    AutoTokenizer.from_pretrained(model_cfg["text_encoder"]).save_pretrained(str(text_dir))
    BertModel.from_pretrained(model_cfg["text_encoder"]).save_pretrained(str(text_dir))
    raw = scratch / "grounding_dino.pth"
    _download(model_cfg["checkpoint_url"], raw)
    model = build_grounding_dino(model_cfg, text_dir)
    _fit(model, _torch_state(raw), raw)
    _save_state(model, out / "model.safetensors")


def _hub_sam(model_cfg: Mapping[str, Any], out: Path, scratch: Path) -> None:
    raw = scratch / "sam.pth"
    _download(model_cfg["checkpoint_url"], raw)
    model = build_sam(model_cfg)
    _fit(model, _torch_state(raw), raw)
    _save_state(model, out / "model.safetensors")


def _random_grounding_dino(model_cfg: Mapping[str, Any], out: Path, seed: int) -> None:
    text_dir = out / "text_encoder"
    write_tiny_bert(text_dir, seed)
    seed_everything(seed)
    _save_state(build_grounding_dino(model_cfg, text_dir), out / "model.safetensors")


def _random_sam(model_cfg: Mapping[str, Any], out: Path, seed: int) -> None:
    seed_everything(seed)
    _save_state(build_sam(model_cfg), out / "model.safetensors")


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def prepare_detector_weights(models_cfg: dict, cache: Path, source: str, seed: int) -> dict[str, str]:
    """Write ``{cache}/grounding_dino/`` and ``{cache}/sam/``; return {path in cache: sha256}.

    ``models_cfg`` is the config's ``models`` section (``grounding_dino`` and ``sam`` are read).
    Each folder is built in a sibling temporary folder and renamed into place, so an
    interrupted run leaves no half-written cache.
    """
    if source not in ("hub", "random"):
        raise WorkflowInputError("weights.source", f"unknown source {source!r}")
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    parts = [("grounding_dino", GD_DIR, GD_BUILD), ("sam", SAM_DIR, SAM_BUILD)]
    with tempfile.TemporaryDirectory(dir=cache, prefix=".detector-weights-") as scratch_name:
        scratch = Path(scratch_name)
        for kind, folder, build_rel in parts:
            model_cfg = models_cfg[kind]
            out = scratch / folder
            out.mkdir()
            if source == "hub":
                (_hub_grounding_dino if kind == "grounding_dino" else _hub_sam)(
                    model_cfg, out, scratch)
            elif kind == "grounding_dino":
                _random_grounding_dino(model_cfg, out, seed)
            else:
                _random_sam(model_cfg, out, seed)
            record = {**build_record(kind, model_cfg), "source": source}
            (scratch / build_rel).write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")
        for _, folder, _ in parts:
            _replace_dir(scratch / folder, cache / folder)
    assert (cache / GD_WEIGHTS).is_file() and (cache / GD_TEXT_ENCODER).is_dir()
    assert (cache / SAM_WEIGHTS).is_file()
    return {
        path.relative_to(cache).as_posix(): sha256_file(path)
        for folder in (GD_DIR, SAM_DIR)
        for path in sorted((cache / folder).rglob("*"))
        if path.is_file()
    }
