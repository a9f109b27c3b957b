"""Files we read and write without knowing any model: checkpoints (safe loading, atomic writes), input-file checks
(inputs) and CompressAI's zoo weights (zoo)."""
