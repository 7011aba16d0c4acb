"""Tone-mapped PNG previews of a finished job at any exposure, without re-running the model.

The worker saves each result's linear HDR as ``.npy``; a preview request loads it (a small
LRU cache keeps the last few) and applies the same rendition as ``--preview``
(:mod:`gmodiff.io.tonemap`) at
``auto exposure × 2**ev``. Both views of a comparison use the main result's auto exposure, so
the same slider position means the same exposure on both sides.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from gmodiff.io.preview import auto_exposure, tonemap_preview

EV_RANGE = 4.0
"""The exposure slider spans ±4 stops."""


class HDRCache:
    """The last few HDR arrays (and their auto exposure) by file, bounded in count and bytes.

    The slider only ever needs the job on screen (main + comparison), so a handful is enough;
    a larger cache would just hold memory after the photographer has moved on.
    """

    def __init__(self, max_items: int = 4, max_bytes: int = 512 * 1024 * 1024):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[Path, tuple[np.ndarray, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> tuple[np.ndarray, float]:
        """(hdr, auto exposure) of ``path``, loading it on a miss."""
        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        hdr = np.load(path)
        item = (hdr, auto_exposure(hdr))
        with self._lock:
            self._items[path] = item
            while len(self._items) > 1 and (
                    len(self._items) > self.max_items
                    or sum(a.nbytes for a, _ in self._items.values()) > self.max_bytes):
                self._items.popitem(last=False)
        return item

    def forget(self, folder: Path) -> None:
        """Drop every array loaded from under ``folder`` (its job was deleted)."""
        with self._lock:
            for path in [p for p in self._items if folder in p.parents]:
                del self._items[path]


def clamp_ev(ev: float) -> float:
    """The slider's value, kept within ±``EV_RANGE`` (and finite)."""
    if not np.isfinite(ev):
        return 0.0
    return float(min(EV_RANGE, max(-EV_RANGE, ev)))


def encode_png(rgb_u8: np.ndarray) -> bytes:
    """8-bit RGB array → PNG bytes (fast compression: previews are re-rendered often)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb_u8[:, :, ::-1]),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def preview_png(cache: HDRCache, view: Path, main: Path, ev: float) -> bytes:
    """PNG of ``view``'s HDR at ``ev`` stops from the main result's auto exposure."""
    _, base = cache.get(main)
    hdr, _ = cache.get(view)
    return encode_png(tonemap_preview(hdr, exposure=base * 2.0 ** clamp_ev(ev)))
