"""Data: the datasets the training and embedding features read (MNIST, CIFAR-10, built-in digits) and
their downloads."""
