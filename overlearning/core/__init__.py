"""Shared helpers every stage uses: errors, atomic writes, image I/O, hashing, masks."""
