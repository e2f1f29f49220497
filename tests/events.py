"""The real-shaped sample events in `events/`, as the tests use them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of `events/<name>` (tests may change it freely)."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event
