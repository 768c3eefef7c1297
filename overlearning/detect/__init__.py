"""Stage 4: GroundingDINO detection, SAM segmentation and the clothes probe."""
