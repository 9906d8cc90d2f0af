"""What the explorer's help overlay (F1 or ?) lists: every control of its panels and every key, grouped
the way the screen is.  Text only; engine/ui/help.py draws it.
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
            ("hover a node", "highlight it and draw its incoming edges"),
            ("click a node", "Node details: what it computes, with this drawing's numbers"),
            ("click empty space", "close the details"),
            ("F  /  Fit all", "fit the whole network into view"),
            ("PageUp  /  PageDown", "fly to the next layer up (towards the output) / down"),
        ),
    ),
    HelpSection(
        "Draw a digit",
        (
            ("left drag on the pad", "draw with the current tool (Pen or Eraser)"),
            ("right drag on the pad", "erase"),
            ("Clear, brush slider", "empty the pad; brush width"),
            ("Ctrl+Z  /  Undo", "undo the last stroke, Clear, shift or turn"),
            ("Ctrl+Y, Ctrl+Shift+Z  /  Redo", "redo"),
            ("what the network sees", "the 28x28 image the network gets, and its top three guesses"),
        ),
    ),
    HelpSection(
        "Network panel",
        (
            ("model", "LeNet (a CNN) or the MLP"),
            ("colours, colour range", "colormap; one colour range per layer, or one for the whole network"),
            ("edges by", "edge colour: the weight, or weight x input (its contribution)"),
            ("layers", "tick to show or hide a layer; click its name to fly to it"),
            ("Embedding window", "t-SNE of a layer's filters or of many images; click a point to select"),
            ("frame time", "frame time overlay"),
            ("UI scale - / +", "text and controls smaller / larger (Ctrl+- / Ctrl+=), remembered"),
            ("presentation (F5)", "big type, panels folded to tabs (click one to open it), network refitted"),
        ),
    ),
    HelpSection(
        "Experiments panel",
        (
            ("compare", "LeNet and the MLP side by side on the same drawing"),
            ("shift, rotate", "move or turn the drawing (undo with Ctrl+Z)"),
            ("centre like MNIST", "the network sees the drawing cropped, scaled and centred as in MNIST"),
            ("A = / B = drawing, test digit", "the two ends of a morph"),
            ("t slider, curve", "slide the input from A to B; the curve shows each class's probability"),
            ("back to the pad", "the network sees the pad's drawing again"),
        ),
    ),
)
