"""Stand-ins for the published pretrained files: official format, random values.

:func:`write_standin_bundle` writes, for the configured models, a weights bundle (layout:
overlearning.models.bundle) whose files have the published container, nesting, prefixes,
legacy key names, extra keys, shapes and dtypes (overlearning.models.official), filled with
seeded random values. At the paper's sizes they are as big as the real files (GroundingDINO
about 700 MB); with ``overrides`` in the config they shrink like the architectures do. The
``weights`` rule reads them with ``weights.source: files`` exactly as it reads the real
files, which is what ``make rehearse`` and the tests rely on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from overlearning.core.seeding import seed_everything
from overlearning.models.bundle import BERT_FILES, bundle_files
from overlearning.models.cache import trunk_keys
from overlearning.models.detector_weights import PROMPT_WORDS, tiny_vocab
from overlearning.models.detectors import build_grounding_dino, build_sam
from overlearning.models.embedder import IMAGENET_MEAN, IMAGENET_STD, build_trunk
from overlearning.models.official import FORMATS, official_state
from overlearning.models.segformer import build_segformer

# bert-base-uncased's vocabulary: 30522 entries, [PAD] first, [unused0..98], then
# [UNK] [CLS] [SEP] [MASK] at 100..103 (its vocab.txt).
BERT_VOCAB_SIZE = 30522
SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}


def standin_vocab(words: list[str], size: int | None) -> list[str]:
    """A vocabulary with BERT's special tokens at their places, ``words``, padded to ``size``."""
    specials = sorted(SPECIAL_IDS, key=SPECIAL_IDS.get)
    if size is None:
        return list(dict.fromkeys([*specials, *words]))
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + specials[1:]
    vocab += [w for w in dict.fromkeys(words) if w not in SPECIAL_IDS]
    vocab += [f"[unused{i}]" for i in range(99, 99 + size - len(vocab))]
    return vocab[:size]


def _save_safetensors(state: Mapping[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    # Hub files carry {"format": "pt"}; transformers reads it.
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})


def _save_pickle(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, str(path))


def write_standin_bert(directory: Path, seed: int, bert_overrides: Mapping[str, Any] | None) -> None:
    """The text encoder's hub files: config, vocabulary, tokenizer files, model.safetensors.

    Full size (``bert_overrides`` None) is bert-base-uncased's BertConfig() with a
    30522-entry vocabulary; overrides shrink it (and the vocabulary to the prompt words).
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    size = None if bert_overrides else BERT_VOCAB_SIZE
    vocab = standin_vocab(tiny_vocab(), size)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    tokenizer.backend_tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}) + "\n")
    config = BertConfig(vocab_size=len(vocab), **dict(bert_overrides or {}))
    config.architectures = ["BertForMaskedLM"]
    config.to_json_file(str(directory / "config.json"))
    seed_everything(seed)
    model = BertModel(config)
    generator = torch.Generator().manual_seed(seed)
    _save_safetensors(official_state(model, FORMATS["bert"], generator), directory / "model.safetensors")
    assert sorted(p.name for p in directory.iterdir()) == sorted(BERT_FILES)


# A trained GroundingDINO keeps a handful of its 900 queries per image; random LayerNorms make
# every query score 1.0 (two unit-variance 256-vectors' dot product), and SAM then decodes
# 900 boxes per image: 85% of a rehearsal's segment time, for nothing a real run does.
KEEP = 5               # the stand-in's best queries on any image ...
KEEP_LOGIT = -1.0      # ... score at least this (sigmoid 0.27, above the paper's 0.2) ...
QUERY_SPREAD = 2.0     # ... and the others fall off by this many logits per standard deviation
RESIDUAL_SCALE = 1e-3  # decoder sublayers' output projections: the queries pass through


def calibrate_grounding_dino(model: torch.nn.Module, generator: torch.Generator,
                             probe_size: tuple[int, int] = (800, 1066)) -> None:
    """Set values of the detector so that the same few queries pass a box threshold on any image.

    A query's logit per token is the dot product of the decoder's normed output and the text
    encoder's normed output. The text side is set to almost one random vector ``v``. The
    decoder's sublayers add their outputs to the query's content, which starts as its learned
    embedding (``tgt_embed``); scaled down by ``RESIDUAL_SCALE`` they leave each query's
    content, and so its logit, almost the same on every image (the boxes still follow the
    image through the encoder's proposals). One probe forward measures the logits; the
    decoder's output LayerNorm then maps them so that the ``KEEP``-th best sits at
    ``KEEP_LOGIT``. Only values change: keys, shapes and dtypes stay the format's.
    """
    from groundingdino.util.misc import nested_tensor_from_tensor_list

    transformer = model.transformer
    if not transformer.embed_init_tgt:
        raise ValueError("the stand-in calibration needs learned query embeddings (embed_init_tgt)")
    text_norm = transformer.encoder.text_layers[-1].norm2
    query_norm = transformer.decoder.norm
    v = torch.randn(text_norm.bias.shape, generator=generator)
    # A noise picture as the detector's transform leaves it, and a caption of every prompt word.
    pixels = torch.randint(0, 256, (3, *probe_size), generator=generator) / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    caption = " . ".join(PROMPT_WORDS) + " ."
    with torch.no_grad():
        for layer in transformer.decoder.layers:
            for proj in (layer.cross_attn.output_proj, layer.self_attn.out_proj,
                         layer.ca_text.out_proj, layer.linear2):
                proj.weight.mul_(RESIDUAL_SCALE)
                proj.bias.mul_(RESIDUAL_SCALE)
        text_norm.weight.fill_(0.01)
        text_norm.bias.copy_(v)
        query_norm.weight.fill_(1.0 / float(v.norm()))
        query_norm.bias.zero_()
        out = model.eval()(nested_tensor_from_tensor_list([(pixels - mean) / std]), captions=[caption])
        best = out["pred_logits"][0].max(dim=1).values
        scale = QUERY_SPREAD / float(best.std())
        kth = float(best.topk(KEEP).values[-1])
        query_norm.weight.mul_(scale)
        query_norm.bias.copy_((KEEP_LOGIT - scale * kth) * v / float(v.dot(v)))


def write_standin_bundle(models_cfg: Mapping[str, Any], out: Path | str, seed: int,
                         bert_overrides: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write every configured model's published file(s) under ``out``; return {key: path}."""
    out = Path(out)
    files = {key: out / rel for key, rel in bundle_files(models_cfg).items()}
    generator = torch.Generator().manual_seed(seed)
    for key in trunk_keys(models_cfg):
        cfg = models_cfg[key]
        seed_everything(seed)
        trunk = build_trunk(cfg)
        state = official_state(trunk, FORMATS[cfg["kind"]], generator)
        if cfg["kind"] in ("timm", "open_clip"):
            _save_safetensors(state, files[key])
        else:
            _save_pickle(state, files[key])
    bert_dir = files["text_encoder"].parent
    write_standin_bert(bert_dir, seed, bert_overrides)
    seed_everything(seed)
    gd = build_grounding_dino(models_cfg["grounding_dino"], bert_dir)
    calibrate_grounding_dino(gd, generator)
    # The published checkpoint nests its (module.-prefixed) state under "model".
    _save_pickle({"model": official_state(gd, FORMATS["grounding_dino"], generator, prefix=True)},
                 files["grounding_dino"])
    del gd
    seed_everything(seed)
    _save_pickle(official_state(build_sam(models_cfg["sam"]), FORMATS["sam"], generator), files["sam"])
    if "segformer_clothes" in models_cfg:
        seed_everything(seed)
        segformer = build_segformer(models_cfg["segformer_clothes"])
        _save_safetensors(official_state(segformer, FORMATS["segformer"], generator),
                          files["segformer_clothes"])
        # The hub's config.json: transformers' full configuration, labels included.
        segformer.config.architectures = ["SegformerForSemanticSegmentation"]
        segformer.config.to_json_file(str(files["segformer_clothes"].parent / "config.json"))
    return files
