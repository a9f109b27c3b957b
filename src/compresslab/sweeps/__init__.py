"""Sweeps: the end-of-sweep Hydra callback (hydra_callbacks) and the Optuna study report (report)."""
