"""Training: the Lightning module (module), losses, optimisers (optim), callbacks, progress, speed, the base-model
resolution (bases) and ``run``, which builds everything from a composed config."""
