"""Stage 2: the networks (embedding trunk, losses, detectors) and the pretrained-weights cache."""
