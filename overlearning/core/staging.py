"""Node-local copies of the packs a GPU job reads every epoch.

On a cluster the packs live on the shared parallel filesystem; a training job reads every
crop of its packs once per epoch, for a hundred epochs. Copied once to the node's own disk
(``$TMPDIR``, which Slurm sites and Snakemake's ``tmpdir`` resource point at node-local
storage), those reads leave the shared filesystem alone.

:func:`staged_packs` copies the packs when the disk has room for them plus a margin,
checks each copy (size, then every member's CRC-32), yields the paths to read, and removes
its folder when the block ends, also on an error or SIGTERM (``terminate_as_exit``); a
folder left by a job killed with SIGKILL is removed by the next job on that node. Without
a node-local folder, or without room, the job reads the packs in place and its log says
why. ``OVERLEARNING_STAGE_DIR`` names another folder than ``$TMPDIR``;
``OVERLEARNING_STAGE_DIR=off`` reads in place.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from overlearning.core.atomic import process_alive, remove_path, terminate_as_exit
from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import verify_pack

STAGE_ENV = "OVERLEARNING_STAGE_DIR"
# Room left free beside the copies: other jobs on the node and their temporary files.
MARGIN_BYTES = 1 << 30
MARGIN_SHARE = 0.10
_FOLDER = re.compile(r"^overlearning-stage-(?P<pid>\d+)-")


def stage_root() -> tuple[Path | None, str]:
    """(node-local folder or None, why) from ``OVERLEARNING_STAGE_DIR`` or ``$TMPDIR``."""
    chosen = os.environ.get(STAGE_ENV)
    if chosen is not None:
        if chosen.lower() in ("", "0", "off", "no", "none"):
            return None, f"{STAGE_ENV}={chosen}"
        return Path(chosen), f"{STAGE_ENV}={chosen}"
    tmpdir = os.environ.get("TMPDIR")
    if not tmpdir:
        return None, "$TMPDIR is not set"
    return Path(tmpdir), f"TMPDIR={tmpdir}"


def needed_bytes(total: int) -> int:
    """What staging ``total`` bytes of packs asks the disk to have free."""
    return total + max(MARGIN_BYTES, int(MARGIN_SHARE * total))


def _remove_abandoned(root: Path) -> None:
    # Folders of staging jobs killed with SIGKILL on this node (their process is gone).
    for entry in root.glob("overlearning-stage-*"):
        match = _FOLDER.match(entry.name)
        if match and int(match["pid"]) != os.getpid() and not process_alive(int(match["pid"])):
            remove_path(entry)


@contextmanager
def staged_packs(packs: Sequence[Path | str],
                 log: Callable[[str], None] = print) -> Iterator[list[Path]]:
    """Yield, for each pack, the path to read it from: a checked node-local copy or itself."""
    packs = [Path(p) for p in packs]
    root, why = stage_root()
    if root is None:
        log(f"staging: reading {len(packs)} pack(s) in place ({why})")
        yield packs
        return
    missing = [p for p in packs if not p.is_file()]
    if missing:  # the reader names it, or the index before it, in its error
        log(f"staging: reading {len(packs)} pack(s) in place ({missing[0]} not found)")
        yield packs
        return
    total = sum(p.stat().st_size for p in packs)
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(root)
        free = shutil.disk_usage(root).free
    except OSError as exc:
        log(f"staging: reading {len(packs)} pack(s) in place ({root} unusable: {exc})")
        yield packs
        return
    if free < needed_bytes(total):
        log(f"staging: reading {len(packs)} pack(s) in place (not enough room in {root}, "
            f"{why}: {free} bytes free, {needed_bytes(total)} needed for {total} bytes of "
            "packs and the margin)")
        yield packs
        return
    folder = Path(os.path.realpath(root)) / f"overlearning-stage-{os.getpid()}-{time.time_ns()}"
    with terminate_as_exit():
        try:
            local = _copy_checked(packs, folder)
        except (OSError, WorkflowInputError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            log(f"staging: reading {len(packs)} pack(s) in place (copy to {folder} failed: "
                f"{exc})")
            yield packs
            return
        log(f"staging: copied {len(packs)} pack(s), {total} bytes, to {folder} ({why}) and "
            f"checked every member; reading from there: {', '.join(map(str, local))}")
        try:
            yield local
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            log(f"staging: removed {folder}")


def _copy_checked(packs: Sequence[Path], folder: Path) -> list[Path]:
    """Copy each pack into ``folder`` and check the copy's size and every member's CRC-32."""
    folder.mkdir()
    local = []
    for i, pack in enumerate(packs):
        target = folder / f"{i}-{pack.name}"
        shutil.copyfile(pack, target)
        if target.stat().st_size != pack.stat().st_size:
            raise OSError(f"{target} has {target.stat().st_size} bytes, {pack} has "
                          f"{pack.stat().st_size}")
        verify_pack(target)
        local.append(target)
    return local
