"""Training: objective, optimizer, the compiled step and epoch, checkpoints, the loop."""
