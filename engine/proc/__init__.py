"""The process layer: one handle base for every worker process (spawn, handshake, restart with back-off,
hang detection, teardown) and the shared-memory slots they exchange arrays through.

Generic: no torch, no network names.  The workers themselves live in convscope.features.
"""
