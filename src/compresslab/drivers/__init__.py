"""Experiment drivers run by `compresslab reproduce` (``python -m compresslab.drivers.<name>``): multi-stage recipes
whose knobs live in conf/; work and results folders are relative to the current folder."""
