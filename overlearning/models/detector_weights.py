"""Fill the weights cache for the detector (GroundingDINO + its BERT) and the segmenter (SAM).

``source="files"`` reads the published GroundingDINO Swin-T checkpoint, ``bert-base-uncased``
and SAM ViT-B from a weights bundle (overlearning.models.bundle; the ``hub`` source of the
weights rule downloads them there first), checks each against its published format and the
configured architecture (overlearning.models.official), and stores them as safetensors (no
pickle reaches a compute node). ``source="random"`` writes tiny seeded random weights of the
same architectures (shrunk by ``models.<x>.overrides``) and a tiny BERT whose vocabulary covers every prompt, for
tests and the demo. Layout: see ``overlearning.models.detectors``.
"""

from __future__ import annotations

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
from overlearning.models.bundle import BERT_FILES, bundle_files
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
from overlearning.models.official import FORMATS, load_official

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


def write_text_encoder(bert_dir: Path, text_dir: Path) -> None:
    """The published BERT (hub files in ``bert_dir``) as the BertModel directory GroundingDINO reads.

    The weights file is checked against the bert-base-uncased format (pre-training heads,
    gamma/beta names) and stored as a plain BertModel beside the tokenizer files.
    """
    from transformers import AutoTokenizer, BertConfig, BertModel

    for name in BERT_FILES:
        if not (bert_dir / name).is_file():
            raise WorkflowInputError(bert_dir / name, "text encoder file missing from the weights bundle")
    try:
        config = BertConfig.from_pretrained(str(bert_dir))
        tokenizer = AutoTokenizer.from_pretrained(str(bert_dir))
    except (OSError, ValueError) as exc:
        raise WorkflowInputError(bert_dir, f"unreadable text encoder files ({exc})") from None
    model = BertModel(config)
    load_official(bert_dir / "model.safetensors", model, FORMATS["bert"])
    text_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(text_dir))
    model.save_pretrained(str(text_dir))


def _files_grounding_dino(model_cfg: Mapping[str, Any], out: Path, checkpoint: Path,
                          bert_dir: Path) -> None:
    text_dir = out / "text_encoder"
    write_text_encoder(bert_dir, text_dir)
    model = build_grounding_dino(model_cfg, text_dir)
    load_official(checkpoint, model, FORMATS["grounding_dino"])
    _save_state(model, out / "model.safetensors")


def _files_sam(model_cfg: Mapping[str, Any], out: Path, checkpoint: Path) -> None:
    model = build_sam(model_cfg)
    load_official(checkpoint, model, FORMATS["sam"])
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


def prepare_detector_weights(models_cfg: dict, cache: Path, source: str, seed: int,
                             bundle: Path | None = None) -> dict[str, str]:
    """Write ``{cache}/grounding_dino/`` and ``{cache}/sam/``; return {path in cache: sha256}.

    ``models_cfg`` is the config's ``models`` section (``grounding_dino`` and ``sam`` are read).
    ``source`` "files" reads the published files from the weights ``bundle``
    (overlearning.models.bundle); "random" writes tiny seeded random weights.
    Each folder is built in a sibling temporary folder and renamed into place, so an
    interrupted run leaves no half-written cache.
    """
    if source not in ("files", "random"):
        raise WorkflowInputError("weights.source", f"unknown source {source!r}")
    if source == "files" and bundle is None:
        raise WorkflowInputError("weights.files", "source files needs the bundle folder")
    published = {k: Path(bundle) / v for k, v in bundle_files(models_cfg).items()} if bundle else {}
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    parts = [("grounding_dino", GD_DIR, GD_BUILD), ("sam", SAM_DIR, SAM_BUILD)]
    with tempfile.TemporaryDirectory(dir=cache, prefix=".detector-weights-") as scratch_name:
        scratch = Path(scratch_name)
        for kind, folder, build_rel in parts:
            model_cfg = models_cfg[kind]
            out = scratch / folder
            out.mkdir()
            if source == "files" and kind == "grounding_dino":
                _files_grounding_dino(model_cfg, out, published["grounding_dino"],
                                      published["text_encoder"].parent)
            elif source == "files":
                _files_sam(model_cfg, out, published["sam"])
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
