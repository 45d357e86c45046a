"""Training: optimizer, loss, jitted step, checkpoints and the loop."""
