"""The experiences built on the engine: the inference explorer, and later training and embeddings."""
