"""convscope runtime: window, camera, GPU drawing, UI glue and the torch worker.

Knows no particular network."""
