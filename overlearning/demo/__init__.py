"""Generators of the demo's stand-in downloads; no stage imports them."""
