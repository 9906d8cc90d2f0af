"""Who owns the exhibit right now: nobody (idle), the network itself (attract) or a visitor.

A small state machine on an injectable clock, so tests run hours of museum time in microseconds.
Both timeouts count from the last touch (any touch, click, key or pointer motion; Clear included):

    idle / visitor  --attract_after s, no input-->  attract   the network draws digits by itself
    any             --input------------------------> visitor   attract stops at once; the pad is theirs
    (any state)     --reset_after s, no input----->  RESET     once per quiet spell: pad, camera, panels

With the defaults (8 s / 45 s) a visitor who walks away sees the pen take over after 8 s and the
camera and panels reset after 45 s; with attract_after >= reset_after both happen together.

`step(had_input)` once per frame returns what the scene must do this frame, in order:
RESET, START_ATTRACT, STOP_ATTRACT.  It knows nothing about pads or cameras.
"""

from __future__ import annotations

import time
from collections.abc import Callable

IDLE, ATTRACT, VISITOR = "idle", "attract", "visitor"
START_ATTRACT, STOP_ATTRACT, RESET = "start_attract", "stop_attract", "reset"


class IdleMachine:
    def __init__(
        self, attract_after: float, reset_after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attract_after = float(attract_after)
        self.reset_after = float(reset_after)
        self.clock = clock
        self.state = IDLE
        self.last_input = clock()  # start-up counts as the last input: attract begins after attract_after
        self.visitors = 0  # sessions begun (idle / attract -> visitor)
        self.resets = 0
        self._reset_due = False  # a visitor touched since the last reset: the next quiet spell resets

    @property
    def idle_for(self) -> float:
        """Seconds since the last input."""
        return self.clock() - self.last_input

    def touch(self) -> list[str]:
        """Input this frame (a window event, or a panel button such as Clear)."""
        return self.step(True)

    def step(self, had_input: bool) -> list[str]:
        """Advance to now; `had_input` is any touch, click, key or pointer motion since the last step."""
        actions: list[str] = []
        if had_input:
            self.last_input = self.clock()
            self._reset_due = True
            if self.state != VISITOR:
                if self.state == ATTRACT:
                    actions.append(STOP_ATTRACT)
                self.state = VISITOR
                self.visitors += 1
            return actions
        idle = self.idle_for
        if self._reset_due and idle >= self.reset_after:
            self._reset_due = False
            self.resets += 1
            actions.append(RESET)
        if self.state != ATTRACT and idle >= min(self.attract_after, self.reset_after):
            self.state = ATTRACT
            actions.append(START_ATTRACT)
        return actions
