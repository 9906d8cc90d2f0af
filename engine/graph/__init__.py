"""Network geometry with no GL and no torch: the network spec and the 3D node layout."""
