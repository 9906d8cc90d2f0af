"""The kiosk: convscope as an unattended museum exhibit (attract mode, idle reset, touch-sized
panels, locked keys, a supervisor that restarts it, and a soak test).  See docs/KIOSK.md.

    scene.py       KioskScene: wraps the explorer's ExploreScene by composition
    idle.py        who owns the exhibit: idle -> attract -> visitor -> reset (injectable clock)
    attract.py     the pen that draws the shipped stroke paths (strokes.json) on the pad
    panels.py      big touch controls, the network's reading, visitor text, PIN keypad
    config.py      KioskConfig and the [kiosk] table of the config file (errors name key and line)
    run.py         window / headless runners; supervisor.py keeps the app alive; soak.py reports
"""
