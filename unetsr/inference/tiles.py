"""How the Upscaler cuts a photo into tiles: their default size and context, and the plan of one pass.

Pure Python, so the command-line fronts can show these defaults in --help without importing torch."""

from __future__ import annotations

DEFAULT_TILE = 384
"""LR pixels per tile side: bounds peak memory with no clear loss of speed (docs/performance.md)."""

DEFAULT_TILE_OVERLAP = 16
"""LR pixels of context around each tile: seams within 1.5/255 of untiled outputs (docs/performance.md)."""

Box = tuple[int, int, int, int]
"""(top, left, bottom, right) of a tile, in LR pixels."""


def plan_tiles(height: int, width: int, tile: int | None, stride: int = 1) -> list[Box]:
    """The tiles one model pass computes an H×W image in, row by row: one box when `tile` is None or the image
    fits in a tile; else tiles of about tile² pixels, so that a thin photo costs what a square one of the same
    area does. Square `tile`×`tile` tiles where both sides are at least `tile`; across a side shorter than a
    tile, bands that span it whole and run as far along the other side as tile² pixels allow (the short side
    counted as the model pads it, to a multiple of `stride`; band lengths stay multiples of `stride`, so every
    tile starts on the encoder's grid). `tile` is a multiple of `stride`."""
    if not tile or (height <= tile and width <= tile):
        return [(0, 0, height, width)]
    tile_h = tile_w = tile
    if height < tile:
        tile_h, tile_w = height, _band_length(height, tile, stride)
    elif width < tile:
        tile_h, tile_w = _band_length(width, tile, stride), width
    return [(top, left, min(top + tile_h, height), min(left + tile_w, width))
            for top in range(0, height, tile_h) for left in range(0, width, tile_w)]


def _band_length(short: int, tile: int, stride: int) -> int:
    """How far a band across a `short` side runs: tile² pixels over the short side padded to the stride,
    rounded down to a multiple of the stride, and never less than a tile."""
    padded = -(-short // stride) * stride
    return max(tile, tile * tile // padded // stride * stride)
