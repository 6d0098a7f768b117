"""Everything that runs: Trio actors, supervisor, transport, HTTP and CLI."""

from __future__ import annotations

__all__: list[str] = []
