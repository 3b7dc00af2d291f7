from __future__ import annotations

import math

from tether.observe import process


def test_rss_grows_with_an_allocation() -> None:
    before = process.rss_bytes()
    block = bytearray(64 * 1024 * 1024)
    for i in range(0, len(block), 4096):  # touch every page so it is resident
        block[i] = 1
    after = process.rss_bytes()
    assert not math.isnan(before)
    assert after - before >= 48 * 1024 * 1024
    del block


def test_peak_rss_is_at_least_current() -> None:
    assert process._peak_rss_bytes() >= process.rss_bytes() * 0.9
