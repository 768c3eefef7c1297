"""Command-line arguments that describe one training job, shared by train.py and tune.py."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from overlearning.workflow.cli import ScriptParser, amp_or_stop


class TrainJobParser(ScriptParser):
    """Parsing also runs the training job's checks, before anything is loaded: the device
    guard (ScriptParser) and the bf16 check, which turns ``training.amp`` into the autocast
    the device supports (a one-line refusal, or float32 with a warning where
    ``training.amp_fallback`` is none). The fallback key itself leaves ``args.training``:
    it is not part of the job, nor of its checkpoint fingerprint."""

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        args = super().parse(argv)
        training = {k: v for k, v in args.training.items() if k != "amp_fallback"}
        training["amp"] = amp_or_stop(training.get("amp", "none"),
                                      args.training.get("amp_fallback", "refuse"),
                                      args.device, args.rule)
        args.training = training
        return args


def train_job_parser(doc: str | None) -> TrainJobParser:
    """A parser with the training job's arguments (hub access goes off when it parses)."""
    parser = TrainJobParser(doc, threads=True, weights_cache=True, device=True)
    parser.add_argument("--setting", required=True, help="name of the loss setting")
    parser.add_settings("--params", "config training.settings.<setting>")
    parser.add_settings("--training", "config training.*")
    parser.add_settings("--trunk", "config models.<trunk>")
    parser.add_argument("--train-dir", required=True, help="{DATA}/vis/train")
    parser.add_argument("--valid-dir", required=True, help="{DATA}/vis/valid")
    parser.add_argument("--person-category", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    return parser


def train_job_from_args(args: argparse.Namespace, params: dict[str, Any] | None = None):
    """The TrainJob the arguments describe (``params`` overrides --params, e.g. tuned)."""
    from overlearning.train.loop import TrainJob

    return TrainJob(
        setting=args.setting, params=args.params if params is None else params,
        training=args.training, trunk_cfg=args.trunk,
        cache=Path(args.cache), train_dir=Path(args.train_dir), valid_dir=Path(args.valid_dir),
        person_category=args.person_category, seed=args.seed, threads=args.threads,
        device=args.device.type,
    )
