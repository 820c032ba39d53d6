"""Stored text made safe for a terminal.

A history is written by whoever ran the tests, and its strings (test ids, branches,
commits, machine facts, verdicts) reach the terminal through the ``pytest-energy``
command and the gate's summary. An escape sequence in one must not move the cursor,
retitle the window or hide text, so each character a terminal acts on is shown
escaped (``\\x1b``): the text stays readable and nothing is silently lost.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (CSI as one byte), and the
# bidirectional overrides and isolates that reorder what is shown.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every terminal control character shown escaped."""
    return _CONTROLS.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"),
                         text)
