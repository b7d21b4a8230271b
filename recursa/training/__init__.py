"""Training: losses, optimisers, EMA, the run directory and its checkpoints, the training loop, and
test-time adaptation of puzzle embeddings (:mod:`.adapt`)."""
