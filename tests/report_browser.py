"""The browser side of the report tests: Debian's headless Chromium through Playwright (never `playwright install`),
pages opened with every request but file:// refused, and the screenshot-vs-DOM check of a plot."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    """Chromium from Debian (never `playwright install`), or the test is skipped with the reason."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: the report browser tests need Debian's chromium "
                    "(apt-get install chromium, as .ci/run does as root)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


def open_offline(browser, page_file: Path):
    """The page with the network cut off: (page, console errors, refused request URLs)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    refused: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(page_file.as_uri())
    return page, errors, refused


def _rgb(colour: str) -> tuple[int, int, int]:
    if colour.startswith("#"):
        return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    return tuple(int(float(v)) for v in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3])  # type: ignore


def assert_drawn(page, div_id: str) -> list[str]:
    """Screenshot against DOM: the plot's data (what the page meant to draw) against what Chromium drew. The
    rendered legend names exactly the data's visible traces, every data point is a rendered marker, and the
    screenshot holds pixels of every trace's colour (a page whose plot stays blank, or draws other curves, fails).
    Returns the traces' names."""
    import numpy as np
    from PIL import Image

    page.wait_for_selector(f"#{div_id} .plotly .main-svg")
    data = page.evaluate(f"""Array.from(document.getElementById('{div_id}')._fullData, t => ({{name: t.name,
        visible: t.visible, legend: t.showlegend, n: (t.mode || '').includes('markers') ? t.x.length : 0,
        colour: (t.mode || '').includes('markers') ? t.marker.color : t.line.color}}))""")
    shown = [t for t in data if t["visible"] is True]
    assert shown, f"#{div_id}: no visible trace"
    legend = page.locator(f"#{div_id} .legend .legendtext").all_text_contents()
    assert legend == [t["name"] for t in data if t["visible"] is not False and t["legend"]], (legend, data)
    markers = page.locator(f"#{div_id} .scatterlayer .trace .points path").count()
    assert markers == sum(t["n"] for t in shown), (markers, data)
    png = np.asarray(Image.open(io.BytesIO(page.locator(f"#{div_id}").screenshot())).convert("RGB"), np.int32)
    box = page.evaluate(f"document.getElementById('{div_id}')._fullLayout._size")  # the plot area, no legend
    area = png[int(box["t"]):int(box["t"] + box["h"]), int(box["l"]):int(box["l"] + box["w"])]
    assert area.std() > 10, f"#{div_id}: the plot area of the screenshot is blank"
    found = {}
    for t in shown:
        if isinstance(t["colour"], str):  # one colour per trace (a list: per-point colours, not checked here)
            found[t["name"]] = int((np.abs(area - np.array(_rgb(t["colour"]))).sum(axis=2) <= 24).sum())
    # curves may lie under others (a control equal to its base): most, not all, must show their own colour
    assert sum(n >= 10 for n in found.values()) * 2 > len(found), f"#{div_id}: trace colours not drawn: {found}"
    return [t["name"] for t in data]
