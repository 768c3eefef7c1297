"""AttnLRP heat maps for a few person queries of one torchvision-ViT model (the `explain` rule).

The explained score is the cosine similarity between the query's embedding and that of its
best same-identity gallery image (from the cached embeddings).
"""

from __future__ import annotations

import sys
from pathlib import Path

from overlearning.workflow.cli import ScriptParser, set_torch_threads


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_settings("--trunk", "config models.<trunk>")
    parser.add_argument("--embedding-dim", type=int, required=True)
    parser.add_argument("--queries", required=True, help="query embeddings (.npz)")
    parser.add_argument("--gallery", required=True, help="gallery embeddings (.npz)")
    parser.add_argument("--query-root", required=True, help="folder of the query images")
    parser.add_argument("--gallery-root", required=True, help="folder of the gallery images")
    parser.add_argument("--out", nargs="+", required=True, help="one PNG per query")
    args = parser.parse(argv)

    import torch

    from overlearning.evaluate.embeddings import load_embedding_set
    from overlearning.evaluate.explain import (
        check_torchvision_trunk,
        enable_attnlrp,
        explain_queries,
    )
    from overlearning.models.embedder import load_embedding_model

    set_torch_threads(args.threads)
    enable_attnlrp()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_embedding_model(Path(args.model_dir), args.trunk,
                                 args.embedding_dim, device=device)
    check_torchvision_trunk(model, args.model_dir)
    explain_queries(model, load_embedding_set(args.queries), load_embedding_set(args.gallery),
                    args.query_root, args.gallery_root, args.out, device=device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
