"""convscope runtime: window, camera, GPU drawing, UI glue and the torch worker; knows no particular network."""
