"""pytest fixtures shared across the suite (registered from tests/conftest.py)."""

from __future__ import annotations
