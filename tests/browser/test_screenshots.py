"""The README's screenshots can be taken: tests/browser/screenshots.py, into a temporary
folder, gives two PNG files of 1280x800 under 300 KB each."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.browser.screenshots import NAMES, take
from tests.browserkit import png_size

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]


@pytest.mark.slow  # about 10 s: a day of predictions seeded, a daemon's first heartbeat
async def test_the_screenshots_script_saves_two_small_pngs(
    chromium: Browser, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    saved = await take(chromium, tmp_path, work)
    assert [path.name for path in saved] == list(NAMES)
    for path in saved:
        data = path.read_bytes()
        assert png_size(data) == (1280, 800), path.name
        assert len(data) < 300_000, f"{path.name} is {len(data)} bytes"
    docs = Path(__file__).parents[2] / "docs"
    for name in NAMES:  # the README shows the committed ones
        assert png_size((docs / name).read_bytes()) == (1280, 800), name
