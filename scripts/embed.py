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
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-dir", help="a trained model: {RESULTS}/models/<setting>")
    model.add_argument("--pretrained", metavar="KEY",
                       help="a trunk as downloaded: config models.<KEY> from --cache")
    parser.add_argument("--cache", help="the weights cache (with --pretrained)")
    parser.add_settings("--trunk", "config models.<trunk>")
    parser.add_argument("--embedding-dim", type=int, help="with --model-dir")
    parser.add_argument("--set", nargs=5, action="append", required=True,
                        metavar=("OUT", "KIND", "SOURCE", "CATEGORY", "DELTA"),
                        help="an .npz to write; crops (a VIS/OVIS split directory) or pack "
                             "(a person image pack); the source; the person category id "
                             "of a crop index, or - for packs; an anonymised delta pack "
                             "read over the source's images, or -")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--workers", type=int, default=0,
                        help="image loader processes (config evaluation.loader_workers)")
    parser.add_argument("--precision", default="fp32", choices=["bf16", "tf32", "fp32"],
                        help="on CUDA (config evaluation.precision); a CPU always runs fp32")
    args = parser.parse(argv)

    import torch

    from overlearning.core.precision import precision_for
    from overlearning.evaluate.embeddings import (
        embed_items,
        embedding_set_from_items,
        items_for_set,
        save_embedding_set,
    )
    from overlearning.evaluate.ranking import set_threads
    from overlearning.models.cache import go_offline
    from overlearning.models.embedder import load_embedding_model, load_pretrained_model

    set_threads(args.threads)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.pretrained:
        if not args.cache:
            parser.error("--pretrained needs --cache")
        go_offline(args.cache)
        model = load_pretrained_model(args.pretrained, args.trunk, args.cache, device=device)
    else:
        if args.embedding_dim is None:
            parser.error("--model-dir needs --embedding-dim")
        model = load_embedding_model(Path(args.model_dir), args.trunk,
                                     args.embedding_dim, device=device)
    for out, kind, source, category, delta in args.set:
        if kind not in ("crops", "pack"):
            parser.error(f"--set {out}: kind must be crops or pack, not {kind!r}")
        items = items_for_set(kind, source, None if category == "-" else int(category),
                              delta=None if delta == "-" else delta)
        print(f"embedding {len(items)} images from {source} on {device}", file=sys.stderr)
        embeddings = embed_items(model, items, args.batch_size, device=device,
                                 num_workers=args.workers,
                                 precision=precision_for(device, args.precision))
        save_embedding_set(out, embedding_set_from_items(items, embeddings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
