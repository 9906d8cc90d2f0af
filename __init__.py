"""convscope: every node of a convolutional network at work, in 3D.

The repository root is this package (see pyproject.toml): engine/ (the runtime), scenes/ (the
experiences), models/ (networks and weights) and shaders/ (GLSL) install as convscope.engine,
convscope.scenes, convscope.models and convscope.shaders.  docs/ARCHITECTURE.md maps the processes.
"""
