"""ImGui glue: the context and its frames (backend), input snapshots (input), small widgets (widgets).

GUI code here and in the scenes only edits state objects; drawing ImGui is engine.gpu.imgui_renderer.
"""
