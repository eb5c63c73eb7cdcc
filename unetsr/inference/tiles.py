"""How big the tiles are that the Upscaler cuts a photo into, and how much context each carries.

Pure Python, so the command-line fronts can show these defaults in --help without importing torch."""

from __future__ import annotations

DEFAULT_TILE = 384
"""LR pixels per tile side: bounds peak memory with no clear loss of speed (docs/performance.md)."""

DEFAULT_TILE_OVERLAP = 16
"""LR pixels of context around each tile: seams within 1.5/255 of untiled outputs (docs/performance.md)."""
