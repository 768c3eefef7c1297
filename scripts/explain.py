"""AttnLRP heat maps for a few person queries of one torchvision-ViT model (the `explain` rule).

The explained score (--target) is the cosine similarity between the query's embedding and
that of its best same-identity gallery image (from the cached embeddings), or the L2 norm of
the query's embedding (the authors' choice); one heat map per --gamma pair.
"""

from __future__ import annotations

import sys
from pathlib import Path

from overlearning.workflow.cli import ScriptParser, set_torch_threads


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True, device=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_settings("--trunk", "config models.<trunk>")
    parser.add_argument("--embedding-dim", type=int, required=True)
    parser.add_argument("--queries", required=True, help="query embeddings (.npz)")
    parser.add_argument("--gallery", required=True, help="gallery embeddings (.npz)")
    parser.add_argument("--query-root", required=True, help="folder of the query images")
    parser.add_argument("--gallery-root", required=True, help="folder of the gallery images")
    parser.add_argument("--target", choices=("similarity", "norm"), default="similarity",
                        help="config explain.target")
    parser.add_argument("--gamma", nargs=2, type=float, action="append", metavar=("CONV", "LINEAR"),
                        help="one zennit Gamma pair per heat map (config explain.gammas); "
                             "default 0.25 0.05")
    parser.add_argument("--out", nargs="+", required=True, help="one PNG per query")
    args = parser.parse(argv)  # the device guard runs here: cuda or a one-line stop

    from overlearning.core.names import setting_title
    from overlearning.evaluate.embeddings import load_embedding_set
    from overlearning.evaluate.explain import (
        check_torchvision_trunk,
        enable_attnlrp,
        explain_queries,
    )
    from overlearning.models.embedder import load_embedding_model

    set_torch_threads(args.threads)
    enable_attnlrp()
    device = args.device
    model = load_embedding_model(Path(args.model_dir), args.trunk,
                                 args.embedding_dim, device=device)
    check_torchvision_trunk(model, args.model_dir)
    explain_queries(model, load_embedding_set(args.queries), load_embedding_set(args.gallery),
                    args.query_root, args.gallery_root, args.out, device=device,
                    target=args.target, gammas=[tuple(g) for g in args.gamma or [(0.25, 0.05)]],
                    label=setting_title(Path(args.model_dir).name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
