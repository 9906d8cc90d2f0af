"""Embedding: filter and image vectors (computed in the inference or training process), the images job
that carries them, and the t-SNE process with its handle.  Importing the package imports no torch."""
