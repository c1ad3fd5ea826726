"""segen commands: (to be filled in). Imports stay light: heavy ones go inside handlers."""
from __future__ import annotations

from typing import Any


def add_commands(sub: Any, data: Any) -> None:
    """Add this group's commands to the top-level (sub) and `segen data` (data) parsers."""
