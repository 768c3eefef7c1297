"""2-D map (t-SNE or UMAP) of each model's VIS test embeddings, persons highlighted
(the `embedding_map` rule). Each --set is ``NAME NPZ``."""

from __future__ import annotations

import sys

from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True)
    parser.add_argument("--set", nargs=2, metavar=("NAME", "NPZ"), action="append", required=True)
    parser.add_argument("--method", choices=["tsne", "umap"], required=True)
    parser.add_argument("--max-points", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse(argv)

    from overlearning.evaluate.embedding_map import embedding_map
    from overlearning.evaluate.embeddings import load_embedding_set
    from overlearning.evaluate.ranking import set_threads

    set_threads(args.threads)
    sets = [(name, load_embedding_set(path)) for name, path in args.set]
    embedding_map(sets, args.out, args.method, args.seed, args.max_points)
    return 0


if __name__ == "__main__":
    sys.exit(main())
