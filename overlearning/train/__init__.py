"""Stage 3: training one loss setting (loader, loop, checkpoints, tuning)."""
