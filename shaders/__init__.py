"""GLSL sources, loaded by engine.gpu.programs; shipped as package data."""
