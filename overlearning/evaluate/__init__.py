"""Stage 6: embeddings, ranking, metrics, re-ID protocol, tables, figures, explanations."""
