"""Training: losses, configs, the two-stage trainer (``vsrdb train`` / ``torchrun -m vsrdb.train``)."""
