"""Training: the render side's TrainHandle, the training process, its messages, the trainer, the divergence
guard and the allocator tuning.  Importing the package imports no torch."""
