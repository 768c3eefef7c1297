"""The weights cache folders of the detector (GroundingDINO + its BERT) and the segmenter (SAM).

``source="files"`` reads the published GroundingDINO Swin-T checkpoint, ``bert-base-uncased``
and SAM ViT-B from a weights bundle (overlearning.models.bundle; the ``hub`` source of the
weights rule downloads them there first), checks each against its published format and the
configured architecture (overlearning.models.official), and stores them as safetensors (no
pickle reaches a compute node). ``source="random"`` writes tiny seeded random weights of the
same architectures (shrunk by ``models.<x>.overrides``) and a tiny BERT whose vocabulary
covers every prompt, for tests and the demo. Layout: see ``overlearning.models.detectors``;
each model is one folder, written by its own job (overlearning.models.weights).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from overlearning.core.errors import WorkflowInputError
from overlearning.core.seeding import seed_everything
from overlearning.models.bundle import BERT_FILES
from overlearning.models.detectors import build_grounding_dino, build_record, build_sam
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


def _save_build(folder: Path, kind: str, model_cfg: Mapping[str, Any], source: str) -> None:
    record = {**build_record(kind, model_cfg), "source": source}
    (folder / "build.json").write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")


def _published(published: Mapping[str, Path] | None, name: str) -> Path:
    if not published or name not in published:
        raise WorkflowInputError("weights.files", "source files needs the bundle folder")
    return Path(published[name])


def write_grounding_dino(folder: Path, model_cfg: Mapping[str, Any], source: str, seed: int,
                         published: Mapping[str, Path] | None = None) -> None:
    """GroundingDINO's cache folder (``model.safetensors``, ``text_encoder/``, ``build.json``)
    in the empty ``folder``: from the published checkpoint and BERT (``published``, as named
    by overlearning.models.bundle.published_files) with ``source`` "files", or tiny seeded
    random weights and a tiny BERT with ``source`` "random"."""
    text_dir = folder / "text_encoder"
    if source == "files":
        write_text_encoder(_published(published, "text_encoder").parent, text_dir)
        model = build_grounding_dino(model_cfg, text_dir)
        load_official(_published(published, "grounding_dino"), model, FORMATS["grounding_dino"])
    elif source == "random":
        write_tiny_bert(text_dir, seed)
        seed_everything(seed)
        model = build_grounding_dino(model_cfg, text_dir)
    else:
        raise WorkflowInputError("weights.source", f"unknown source {source!r}")
    _save_state(model, folder / "model.safetensors")
    _save_build(folder, "grounding_dino", model_cfg, source)


def write_sam(folder: Path, model_cfg: Mapping[str, Any], source: str, seed: int,
              published: Mapping[str, Path] | None = None) -> None:
    """SAM's cache folder (``model.safetensors``, ``build.json``) in the empty ``folder``."""
    if source == "files":
        model = build_sam(model_cfg)
        load_official(_published(published, "sam"), model, FORMATS["sam"])
    elif source == "random":
        seed_everything(seed)
        model = build_sam(model_cfg)
    else:
        raise WorkflowInputError("weights.source", f"unknown source {source!r}")
    _save_state(model, folder / "model.safetensors")
    _save_build(folder, "sam", model_cfg, source)
