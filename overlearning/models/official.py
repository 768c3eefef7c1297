"""The published pretrained files, read exactly as their publishers wrote them.

Each pretrained file the ``weights`` rule fetches has a known container (safetensors or a
pickled ``.pth``), nesting, key prefix and set of keys. :class:`OfficialFormat` spells that
out per model: which keys the file holds beyond the configured architecture (the extra keys:
a classifier head the trunk drops, GroundingDINO's unused ``label_enc``, BERT's pre-training
heads), which legacy key names it uses, and which prefix or nesting wraps it. Reading a file
(:func:`read_official`) accepts exactly that: every architecture key present with the
architecture's shape and dtype, every extra key from the allow-list, nothing else. Anything
else stops with one line naming the file and the key.

The key set itself is never written down by hand: it comes from the architecture built at
the configured size (``model.state_dict()``), so a full-size build gives the published key
set and a shrunk one (tests, demo) the same structure at small size. docs/weights.md says
where each format fact was read.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from overlearning.core.errors import WorkflowInputError
from overlearning.models.open_clip_trunk import text_tower_specs

# (shape, dtype) of a tensor; the extra keys are described this way.
Spec = tuple[tuple[int, ...], torch.dtype]


@dataclass(frozen=True)
class OfficialFormat:
    """How one published file stores one architecture's weights.

    ``renames`` are (pattern in the architecture's key, replacement in the file's key)
    pairs, applied with ``re.sub`` in order; they describe legacy names the file uses.
    ``extras(model)`` returns the extra keys of the file with their shape and dtype;
    ``optional_extras`` lists extra keys a copy of the file may lack (see docs/weights.md).
    ``prefix`` is a prefix on every key that some copies carry (``module.`` from
    DistributedDataParallel) and the publisher's own loader strips; ``key_prefix`` is a
    prefix every key of the file carries (BERT's ``bert.``).
    """

    name: str
    container: str                      # "safetensors" or "pickle"
    nesting: str | None = None          # state dict under this top-level key
    metadata_keys: frozenset[str] = frozenset()  # other top-level entries, not weights
    prefix: str | None = None
    key_prefix: str = ""
    renames: tuple[tuple[str, str], ...] = ()
    extras: Callable[[torch.nn.Module], dict[str, Spec]] = field(default=lambda model: {})
    optional_extras: frozenset[str] = frozenset()

    def file_key(self, key: str) -> str:
        for pattern, replacement in self.renames:
            key = re.sub(pattern, replacement, key)
        return self.key_prefix + key


def _timm_head(model: torch.nn.Module) -> dict[str, Spec]:
    # The hub file holds the ImageNet-1k classifier the trunk (num_classes=0) leaves out.
    width = int(model.num_features)
    return {"head.weight": ((1000, width), torch.float32), "head.bias": ((1000,), torch.float32)}


def _torchvision_head(model: torch.nn.Module) -> dict[str, Spec]:
    width = int(model.hidden_dim)
    return {"heads.head.weight": ((1000, width), torch.float32),
            "heads.head.bias": ((1000,), torch.float32)}


def _grounding_dino_extras(model: torch.nn.Module) -> dict[str, Spec]:
    # DINO's denoising label embedding (dn_labelbook_size + 1 rows), which GroundingDINO's
    # code no longer builds, and BERT's position_ids buffer that transformers < 4.31 saved.
    labels = int(model.dn_labelbook_size) + 1
    positions = int(model.bert.config.max_position_embeddings)
    return {"label_enc.weight": ((labels, int(model.hidden_dim)), torch.float32),
            "bert.embeddings.position_ids": ((1, positions), torch.int64)}


def _bert_pretraining_heads(model: torch.nn.Module) -> dict[str, Spec]:
    # BertForPreTraining's masked-LM and next-sentence heads, LayerNorm named gamma/beta.
    hidden, vocab = int(model.config.hidden_size), int(model.config.vocab_size)
    f32 = torch.float32
    return {
        "cls.predictions.bias": ((vocab,), f32),
        "cls.predictions.transform.dense.weight": ((hidden, hidden), f32),
        "cls.predictions.transform.dense.bias": ((hidden,), f32),
        "cls.predictions.transform.LayerNorm.gamma": ((hidden,), f32),
        "cls.predictions.transform.LayerNorm.beta": ((hidden,), f32),
        "cls.predictions.decoder.weight": ((vocab, hidden), f32),
        "cls.seq_relationship.weight": ((2, hidden), f32),
        "cls.seq_relationship.bias": ((2,), f32),
    }


FORMATS: dict[str, OfficialFormat] = {
    # timm hub repo timm/<name>: model.safetensors, timm's own key names, with classifier.
    "timm": OfficialFormat(name="timm hub model.safetensors", container="safetensors",
                           extras=_timm_head),
    # download.pytorch.org/models/vit_b_16_swag-9ac1b537.pth: a plain state dict saved
    # before torchvision renamed MLPBlock's linear_1/linear_2 to 0/3 (pytorch/vision#6053).
    "torchvision": OfficialFormat(
        name="torchvision .pth", container="pickle",
        renames=((r"\.mlp\.0\.", ".mlp.linear_1."), (r"\.mlp\.3\.", ".mlp.linear_2.")),
        extras=_torchvision_head),
    # groundingdino_swint_ogc.pth: {"model": state dict}, keys possibly "module."-prefixed
    # (the official loader strips it with clean_state_dict and loads with strict=False).
    "grounding_dino": OfficialFormat(
        name="GroundingDINO .pth", container="pickle", nesting="model",
        metadata_keys=frozenset({"args", "epoch"}), prefix="module.",
        extras=_grounding_dino_extras),
    # bert-base-uncased model.safetensors: BertForPreTraining converted from the 2018 TF
    # release: "bert."-prefixed, LayerNorm gamma/beta, pre-training heads. The decoder
    # weight is tied to the word embeddings and stored once (the 440,449,768-byte file has
    # room for one copy only); pytorch_model.bin names it, so it is allowed, not required.
    "bert": OfficialFormat(
        name="bert-base-uncased model.safetensors", container="safetensors",
        key_prefix="bert.",
        renames=((r"LayerNorm\.weight$", "LayerNorm.gamma"), (r"LayerNorm\.bias$", "LayerNorm.beta")),
        extras=_bert_pretraining_heads,
        optional_extras=frozenset({"cls.predictions.decoder.weight"})),
    # sam_vit_b_01ec64.pth: a plain state dict of Sam, loaded by build_sam with strict=True.
    "sam": OfficialFormat(name="SAM .pth", container="pickle"),
    # open_clip_model.safetensors in the tag's hf_hub repo: the whole CLIP state dict as
    # open_clip's push_to_hf_hub saves it (image tower under "visual.", text tower and
    # logit_scale at the top level); open_clip's load_checkpoint reads it with strict=True.
    "open_clip": OfficialFormat(name="open_clip hub open_clip_model.safetensors",
                                container="safetensors", key_prefix="visual.",
                                extras=text_tower_specs),
    # mattmdjaga/segformer_b2_clothes model.safetensors: SegformerForSemanticSegmentation's
    # state dict, no prefix, nothing else (from_pretrained reports no unused key).
    "segformer": OfficialFormat(name="SegFormer hub model.safetensors", container="safetensors"),
}


def load_container(path: Path, fmt: OfficialFormat) -> dict[str, Any]:
    """The raw mapping stored in ``path`` (top level of a .pth, all tensors of safetensors)."""
    if not path.is_file():
        raise WorkflowInputError(path, f"{fmt.name} not found")
    if fmt.container == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WorkflowInputError(path, f"not a safetensors file ({exc})") from None
    # weights_only: a published .pth is read without running pickled code; research
    # checkpoints may carry their argparse options, which are plain data.
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for foreign or damaged files
            raise WorkflowInputError(path, f"not a weights-only torch checkpoint ({exc})") from None
    if not isinstance(loaded, Mapping):
        raise WorkflowInputError(path, f"holds a {type(loaded).__name__}, not a state dict")
    return dict(loaded)


def _unwrap(raw: dict[str, Any], fmt: OfficialFormat, path: Path) -> dict[str, Any]:
    if fmt.nesting is None:
        return raw
    if fmt.nesting not in raw:
        raise WorkflowInputError(path, f"no {fmt.nesting!r} entry (top-level keys {sorted(raw)[:5]})")
    unknown = sorted(set(raw) - {fmt.nesting} - fmt.metadata_keys)
    if unknown:
        raise WorkflowInputError(path, f"unexpected top-level key {unknown[0]!r}")
    state = raw[fmt.nesting]
    if not isinstance(state, Mapping):
        raise WorkflowInputError(path, f"{fmt.nesting!r} is not a state dict")
    return dict(state)


def _strip_prefix(state: dict[str, Any], fmt: OfficialFormat, path: Path) -> dict[str, Any]:
    if fmt.prefix is None:
        return state
    prefixed = [k.startswith(fmt.prefix) for k in state]
    if all(prefixed):
        return {k[len(fmt.prefix):]: v for k, v in state.items()}
    if any(prefixed):
        mixed = next(k for k in state if k.startswith(fmt.prefix))
        raise WorkflowInputError(path, f"key {mixed!r} has the {fmt.prefix!r} prefix, others do not")
    return state


def _check_tensor(path: Path, key: str, value: Any, spec: Spec) -> None:
    shape, dtype = spec
    if not isinstance(value, torch.Tensor):
        raise WorkflowInputError(path, f"key {key!r} is a {type(value).__name__}, not a tensor")
    if tuple(value.shape) != tuple(shape):
        raise WorkflowInputError(path, f"key {key!r} has shape {tuple(value.shape)}, "
                                       f"the configured architecture needs {tuple(shape)}")
    if value.dtype != dtype:
        raise WorkflowInputError(path, f"key {key!r} has dtype {value.dtype}, expected {dtype}")


def expected_keys(model: torch.nn.Module, fmt: OfficialFormat) -> dict[str, Spec]:
    """{key as the file stores it (without an optional prefix): (shape, dtype)}."""
    specs = {fmt.file_key(k): (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    for key, spec in fmt.extras(model).items():
        specs[key] = (tuple(spec[0]), spec[1])
    return specs


def read_official(path: Path | str, model: torch.nn.Module, fmt: OfficialFormat) -> dict[str, Any]:
    """The state dict for ``model`` from the published file ``path``, checked key by key.

    Returns the architecture's keys only (extra keys dropped after their check), ready for
    ``model.load_state_dict(state, strict=True)``.
    """
    path = Path(path)
    state = _strip_prefix(_unwrap(load_container(path, fmt), fmt, path), fmt, path)
    wanted = expected_keys(model, fmt)
    for key in state:
        if key not in wanted:
            raise WorkflowInputError(path, f"unexpected key {key!r}: not in the configured "
                                           f"architecture nor in the {fmt.name} allow-list")
    for key, spec in wanted.items():
        if key not in state:
            if key in fmt.optional_extras:
                continue
            raise WorkflowInputError(path, f"missing key {key!r} of the configured architecture")
        _check_tensor(path, key, state[key], spec)
    return {k: state[fmt.file_key(k)] for k in model.state_dict()}


def load_official(path: Path | str, model: torch.nn.Module, fmt: OfficialFormat) -> None:
    """Read ``path`` with :func:`read_official` and load it into ``model`` strictly."""
    state = read_official(path, model, fmt)
    result = model.load_state_dict(state, strict=False)
    # Every key was checked above; this guards the mapping back to the module's names.
    if result.missing_keys or result.unexpected_keys:
        raise WorkflowInputError(path, f"weights do not fit the configured architecture "
                                       f"(missing {result.missing_keys[:3]}, unexpected "
                                       f"{result.unexpected_keys[:3]})")


def official_state(model: torch.nn.Module, fmt: OfficialFormat, generator: torch.Generator,
                   prefix: bool = False) -> dict[str, Any]:
    """The file-form state dict of ``model`` with the format's extra keys filled randomly.

    Used by the stand-in writer (overlearning.models.standins): same keys, shapes, dtypes
    and names as the published file.
    """
    # No copies: entries that share a tensor in the module (GroundingDINO's box heads) share
    # it in the file too, as torch.save of the publisher's state dict did.
    state: dict[str, Any] = {fmt.file_key(k): v.detach() for k, v in model.state_dict().items()}
    for key, (shape, dtype) in fmt.extras(model).items():
        if key in fmt.optional_extras:  # the published file lacks them (docs/weights.md)
            continue
        if dtype.is_floating_point:
            state[key] = torch.randn(shape, generator=generator, dtype=dtype) * 0.02
        else:
            state[key] = torch.arange(shape[-1], dtype=dtype).expand(shape).clone()
    if prefix and fmt.prefix:
        state = {fmt.prefix + k: v for k, v in state.items()}
    return state
