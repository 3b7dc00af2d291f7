"""``--max-memory`` sizes: a number of bytes, or one with a binary unit."""

from __future__ import annotations

import pytest

from tether.execution.guard import parse_size

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", MiB),
        ("512M", 512 * MiB),
        ("512m", 512 * MiB),
        ("800MB", 800 * MiB),
        ("1.5GiB", int(1.5 * 1024 * MiB)),
        ("2G", 2048 * MiB),
        ("64k", 64 * 1024),
        (" 1T ", 1024 * 1024 * MiB),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "G", "1.5.0M", "12Q"])
def test_what_is_not_a_size_says_what_is(text: str) -> None:
    with pytest.raises(ValueError, match="like 512M or 2G"):
        parse_size(text)
