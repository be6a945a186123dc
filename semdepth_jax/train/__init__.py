"""Training: mesh and sharding, optimisers, train state, steps, checkpoints, the loop and its CLI."""
