"""Embed evaluation sets with one trained model (the `embed` and `embed_anonymised` rules).

The model is loaded once and every set given with --set is embedded with it; each set gets
its own .npz (docs/architecture.md): raw embeddings, labels, file names, person flags and
cameras, in the sorted order every metric and figure relies on.
"""

from __future__ import annotations

import sys
from pathlib import Path

from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True)
    parser.add_argument("--model-dir", required=True, help="{RESULTS}/models/<setting>")
    parser.add_settings("--trunk", "config models.<trunk>")
    parser.add_argument("--embedding-dim", type=int, required=True)
    parser.add_argument("--set", nargs=4, action="append", required=True,
                        metavar=("OUT", "KIND", "SOURCE", "CATEGORY"),
                        help="an .npz to write; crops (a VIS/OVIS split directory) or folder "
                             "(a person image folder); the source; the person category id "
                             "of a crop index, or - for folders")
    parser.add_argument("--batch-size", type=int, required=True)
    args = parser.parse(argv)

    import torch

    from overlearning.evaluate.embeddings import (
        embed_items,
        embedding_set_from_items,
        items_for_set,
        save_embedding_set,
    )
    from overlearning.evaluate.ranking import set_threads
    from overlearning.models.embedder import load_embedding_model

    set_threads(args.threads)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_embedding_model(Path(args.model_dir), args.trunk,
                                 args.embedding_dim, device=device)
    for out, kind, source, category in args.set:
        if kind not in ("crops", "folder"):
            parser.error(f"--set {out}: kind must be crops or folder, not {kind!r}")
        items = items_for_set(kind, source, None if category == "-" else int(category))
        print(f"embedding {len(items)} images from {source} on {device}", file=sys.stderr)
        embeddings = embed_items(model, items, args.batch_size, device=device)
        save_embedding_set(out, embedding_set_from_items(items, embeddings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
