"""``compresslab report``: one self-contained HTML page (Plotly, its script inlined once) of runs, sweeps and Optuna
studies. It reads results only through the owners of each format (``evaluation.results`` for rd.json,
``rd.curves`` for curves and BD-rates, ``sweeps.report`` for studies) and computes no number of its own.
"""
