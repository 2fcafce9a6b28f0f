"""Training: configs and the trainer that runs any family's recipe (``vsrdb train`` / ``torchrun -m vsrdb.train``)."""
