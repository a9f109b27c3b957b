"""Reusable entropy-coding pieces that are not whole models (histogram layer, 1-D side-info codec)."""
