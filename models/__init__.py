"""Network definitions (torch), the shipped weights and their model cards.  Torch-side only."""
