"""Resumable training state: the checkpoint file and every random number generator.

A checkpoint (``<checkpoint dir>/checkpoint.pt``, written atomically) holds the model, the
optimisers, the loss state, the sampler, every rank's RNG states (Python, NumPy, torch
CPU/CUDA, the loader's generator), the metrics so far and a fingerprint of what the run
depends on. Restoring all of it is what makes a resumed run end bit-identical to an
uninterrupted one on the same hardware.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from overlearning.train.async_checkpoint import write_atomically

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _python_state() -> dict[str, Any]:
    # As tensors: torch.load(weights_only=True) refuses arbitrary tuples of Python ints.
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.long),
            "gauss": gauss}


def rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    """This process's RNG states: Python, NumPy, torch CPU and CUDA, the loader's generator."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": _python_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": loader_generator.get_state(),
    }


def set_rng_state(state: Mapping[str, Any], loader_generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured (CUDA only on the same number of GPUs)."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    loader_generator.set_state(state["loader"])


def gather_rng_states(loader_generator: torch.Generator, world_size: int) -> list[Any]:
    """Every rank's RNG states in rank order (the main rank writes them all)."""
    if world_size == 1:
        return [rng_state(loader_generator)]
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, rng_state(loader_generator))
    return states


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary name, then rename: a kill never leaves half a checkpoint.

    The one atomic checkpoint writer (it also removes a killed run's half-written file);
    fit() calls it from overlearning.train.async_checkpoint.CheckpointWriter's thread.
    """
    write_atomically(path, state)


def load_checkpoint(path: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it belongs to this run, else None (logged)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint means: start over
        _log(f"ignoring unreadable checkpoint {path} ({type(exc).__name__}: {exc})")
        return None
    if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != expected_fingerprint:
        _log(f"ignoring checkpoint {path}: written for other parameters or data")
        return None
    return state


def training_state(fingerprint: str, epoch: int, model: torch.nn.Module,
                   optimizers: Mapping[str, torch.optim.Optimizer], loss_fn: torch.nn.Module,
                   sampler: Any, rngs: list[Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """What :func:`save_checkpoint` writes after an epoch."""
    return {
        "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch,
        "model": model.state_dict(),
        "optimizers": {name: o.state_dict() for name, o in optimizers.items()},
        "loss": loss_fn.state_dict(), "sampler": sampler.state_dict(),
        "rng": rngs, "history": history,
    }


def restore_training_state(state: Mapping[str, Any], rank: int, model: torch.nn.Module,
                           optimizers: Mapping[str, torch.optim.Optimizer],
                           loss_fn: torch.nn.Module, sampler: Any,
                           loader_generator: torch.Generator) -> tuple[int, list[dict[str, Any]]]:
    """Load a checkpoint into the live objects; (epoch to start with, history so far)."""
    model.load_state_dict(state["model"])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    loss_fn.load_state_dict(state["loss"])
    sampler.load_state_dict(state["sampler"])
    set_rng_state(state["rng"][rank], loader_generator)
    return int(state["epoch"]) + 1, list(state["history"])
