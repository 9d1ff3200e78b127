"""Open a results page in a real headless browser (Debian's chromium, driven by Playwright).

``shown(page)`` returns what a reader sees: the visible claim rows and every thumbnail with whether it
loaded. Raises ``BrowserMissing`` (with the reason) where no browser or no Playwright is installed; the tests
turn that into a skip with its reason. ``.ci/run`` installs both.
"""
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "outputs" / "screenshots"   # kept after the run (outputs/ is gitignored)
# what a headless chromium needs as root on a machine with a closed network
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


class BrowserMissing(RuntimeError):
    pass


def chromium() -> str:
    for name in (os.environ.get("MEMLAB_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise BrowserMissing("no chromium on PATH (Debian: apt-get install chromium; or set MEMLAB_CHROMIUM)")


def shown(page: Path, screenshot: str | None = None) -> dict:
    """{"claims": [text of each visible claim row], "images": [(src, loaded)], "title": str} of ``page``."""
    exe = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise BrowserMissing(f"playwright is not installed ({e}); pip install -e '.[dev]'") from e
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1300, "height": 900})
            tab.goto(Path(page).resolve().as_uri())
            tab.wait_for_load_state("load")
            rows = [r.inner_text() for r in tab.locator("tr.claim").all() if r.is_visible()]
            images = tab.eval_on_selector_all(
                "img.thumb", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])")
            if screenshot:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                tab.screenshot(path=str(SCREENSHOTS / screenshot), full_page=True)
            return {"claims": rows, "images": [tuple(i) for i in images], "title": tab.title()}
        finally:
            browser.close()
