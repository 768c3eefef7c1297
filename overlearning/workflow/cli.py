"""The command-line pieces every workflow script (scripts/*.py) repeats.

Each script builds a :class:`ScriptParser`, which already has ``--log-level`` and, on
request, ``--threads`` (the rule's threads), ``--ext``/``--quality``/``--max-image-pixels``
(how prepared images are written and the largest image read) and ``--cache`` (the weights cache; hub access is switched off as soon as the
arguments are parsed, before any model library is imported). ``parse`` then sets up
logging the same way for every script.

A GPU rule's script asks for ``device=True``: ``--device`` (config ``compute.device``) and
``--rule`` (the rule's name). ``parse`` then runs the device guard
(:func:`overlearning.core.device.require_device`) before anything else happens, replaces
``args.device`` by the torch device, and stops the job with the guard's one line (exit
status 1, no traceback) when the rule asked for CUDA that is not usable here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from overlearning.core.device import DEVICES, DeviceUnavailable, require_amp, require_device
from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import DEFAULT_MAX_IMAGE_PIXELS, set_max_image_pixels
from overlearning.models.cache import go_offline

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ScriptParser(argparse.ArgumentParser):
    """argparse with the workflow's shared arguments (see the module docstring)."""

    def __init__(self, doc: str | None, *, threads: bool = False, image_format: bool = False,
                 weights_cache: bool = False, device: bool = False, **kwargs: Any) -> None:
        super().__init__(description=doc, **kwargs)
        self.add_argument("--log-level", default="INFO", choices=LOG_LEVELS,
                          help="logging level of the library (default INFO)")
        if threads:
            self.add_argument("--threads", type=int, default=1, help="CPU threads of the job")
        if image_format:
            self.add_argument("--ext", default="jpg", help="extension of written images")
            self.add_argument("--quality", type=int, default=75,
                              help="JPEG quality of written images")
            self.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                              help="largest width x height read (preparation.max_image_pixels)")
        self._image_format = image_format
        self._weights_cache = weights_cache
        if weights_cache:
            self.add_argument("--cache", required=True, help="the pretrained weights cache")
        self._device = device
        if device:
            self.add_argument("--device", required=True, choices=DEVICES,
                              help="config compute.device: cuda (or stop) or cpu")
            self.add_argument("--rule", required=True, help="the rule that runs the job")

    def add_settings(self, flag: str, help: str) -> None:
        """A required JSON value (config values a rule picked for the job), parsed once."""
        self.add_argument(flag, required=True, type=json_value, help=f"{help} (JSON)")

    def add_out(self, help: str, flag: str = "--out") -> None:
        """The (required) output the script writes."""
        self.add_argument(flag, required=True, help=help)

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse, configure logging, check the device (GPU rules) and, with a weights
        cache, switch hub access off. ``--processes`` (training) is the GPUs the job needs."""
        args = self.parse_args(argv)
        sys.excepthook = one_line_errors
        logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
        if self._device:
            args.device = device_or_stop(args.device, args.rule,
                                         gpus=max(1, getattr(args, "processes", 1)))
        if self._image_format:
            set_max_image_pixels(args.max_image_pixels)
        if self._weights_cache:
            go_offline(args.cache)
        return args


def device_or_stop(requested: str, rule: str, gpus: int = 1) -> Any:
    """The job's torch device, or exit 1 with the guard's one line on stderr."""
    return _or_stop(require_device, requested, rule=rule, gpus=gpus)


def amp_or_stop(amp: str, fallback: str, device: Any, rule: str) -> str:
    """The autocast the job's device supports (bf16 check), or exit 1 with one line."""
    return _or_stop(require_amp, amp, fallback, device, rule=rule)


def _or_stop(check: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return check(*args, **kwargs)
    except DeviceUnavailable as error:
        print(error, file=sys.stderr)
        raise SystemExit(1) from None


def one_line_errors(kind: type[BaseException], error: BaseException, trace: Any) -> None:
    """Uncaught exceptions: the workflow's own errors (bad input, an output that cannot be
    written) end the script in their one line, naming the file; anything else is a bug and
    keeps its traceback."""
    if isinstance(error, WorkflowInputError):
        print(f"{kind.__name__}: {error}", file=sys.stderr)
    else:
        sys.__excepthook__(kind, error, trace)


def json_value(text: str) -> Any:
    """argparse type of a JSON argument: a bad value stops with argparse's one-line usage error."""
    try:
        return json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None


def set_torch_threads(threads: int) -> None:
    """Let torch use exactly the job's threads (its default is every core of the node)."""
    import torch  # heavy: only scripts that run a model call this

    torch.set_num_threads(max(1, threads))


def report(summary: Mapping[str, Any]) -> None:
    """A script's one-line summary, on stderr (the job's log)."""
    print(json.dumps(summary, sort_keys=True), file=sys.stderr)
