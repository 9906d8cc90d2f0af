"""What the training scene's help overlay (F1 or ?) lists: every control of its panels and every key,
grouped the way the screen is.  Text only; engine/ui/help.py draws it.
"""

from __future__ import annotations

from convscope.engine.ui.help import HelpSection

SECTIONS = (
    HelpSection(
        "The 3D view",
        (
            ("left drag", "turn the network"),
            ("right drag", "move it"),
            ("wheel", "zoom towards the pointer"),
            ("click a feature map", "select its filter (outlined; '- selected' removes it)"),
            ("F  /  Fit all", "fit the whole network into view"),
        ),
    ),
    HelpSection(
        "Training panel",
        (
            ("Space  /  Pause, Resume", "stop and go on"),
            ("Step", "one training step, then paused (step by step)"),
            ("speed", "at most 0.5 to 500 steps a second, or full speed; the rate measured is shown"),
            ("Reset, seed", "start over from fresh weights drawn from the seed"),
            ("< prev, next >, number", "which held-out image is monitored (its activations are drawn)"),
            ("cycle", "show the next held-out image every few seconds"),
            ("Hyperparameters", "learning rate, momentum, batch size, weight decay, optimizer: next step"),
            ("Checkpoint", "save or load model, optimizer and run state"),
        ),
    ),
    HelpSection(
        "Network panel",
        (
            ("+ filter, - selected", "add a filter to a layer, remove the selected one"),
            ("- layer, + layer (at, filters)", "remove a conv layer, insert one (drag the numbers)"),
            ("jitter, paths", "gradient size per filter as trembling; paths of the strongest maps"),
            ("colours, range", "colormap; colour range per layer (typical peak or min-max) or per map"),
            ("View: UI scale - / +", "text and controls smaller / larger (Ctrl+- / Ctrl+=), remembered"),
            ("View: presentation (F5)", "big type, panels folded to tabs (click one to open it)"),
            ("Charts", "loss (log scale), accuracy, images/s against the step"),
            ("First-layer filters", "conv1's weights as pictures"),
        ),
    ),
    HelpSection(
        "Embedding window",
        (
            ("filters / images", "t-SNE of a layer's filters, or of many images' activations"),
            ("click a point", "select that filter, or monitor that held-out image"),
        ),
    ),
)
