"""Training: losses, optimisers, EMA, checkpoints and the training loop."""
