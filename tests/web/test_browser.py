"""The demo page in a real browser: Debian's chromium, headless, driven by Playwright, with every
request that is not to the local server refused (and recorded) and host names resolving nowhere.

Skipped with a message when chromium or Playwright is missing (.ci/run installs both).
Set GENFORGE_SCREENSHOT=FILE.png to keep a screenshot of the page after generating.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.web.web_helpers import png_bytes, served

pytestmark = pytest.mark.browser

pytest.importorskip("fastapi", reason="the web demo needs the web extra: pip install 'genforge[web]'")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser tests need Playwright: pip install 'genforge[browser]'")

CHROMIUM = os.environ.get("GENFORGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("no chromium found: the browser tests need Debian's chromium (apt-get install -y chromium) "
                "or GENFORGE_CHROMIUM=/path/to/chrome", allow_module_level=True)


@pytest.fixture(scope="module")
def page_at(web_run_dirs):
    """(page, base URL, outside requests seen) for a server running the three tiny runs."""
    with served(*[item for path in web_run_dirs.values() for item in ("--run", path)], "--max-images", "8") as (base, _):
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            outside = []

            def gate(route):
                if route.request.url.startswith(base + "/") or route.request.url.startswith("data:"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", gate)
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base + "/")
            page.wait_for_selector("body[data-ready=true]", timeout=30_000)
            yield page, base, outside
            assert errors == [], f"script errors on the page: {errors}"
            browser.close()


def _images(page) -> list[str]:
    return page.eval_on_selector_all("#results img", "els => els.map(e => e.src)")


def test_generate_shows_images_and_another_seed_others(page_at, tmp_path):
    page, _, outside = page_at
    page.select_option("#model", "cgan")
    page.fill("#seed", "0")
    page.fill("#n", "8")
    page.select_option("#label", "3")
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#results img').length === 8")
    first = _images(page)
    assert all(src.startswith("data:image/png;base64,") for src in first)
    assert page.is_visible("#download") and page.get_attribute("#download", "download").endswith(".png")
    page.fill("#seed", "1")
    page.click("#generate")
    page.wait_for_function(f"document.querySelector('#results img').src !== {first[0]!r}")
    second = _images(page)
    assert len(second) == 8 and second != first
    if os.environ.get("GENFORGE_SCREENSHOT"):
        page.screenshot(path=os.environ["GENFORGE_SCREENSHOT"], full_page=True)
    assert outside == [], f"the page asked for outside resources: {outside}"


def test_a_bad_value_shows_an_error(page_at):
    page, _, _ = page_at
    page.select_option("#model", "cgan")
    page.fill("#n", "100")
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])")
    assert "Images must be a whole number from 1 to 8" in page.inner_text("#error")
    page.fill("#n", "2")
    page.fill("#truncation", "-1")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#error').textContent.includes('Truncation')")
    page.fill("#truncation", "")
    page.click("#generate")
    page.wait_for_selector("#error", state="hidden")


def test_interpolation_animates_and_translation_shows_server_errors(page_at, tmp_path):
    page, _, outside = page_at
    page.select_option("#model", "vae")
    assert page.is_hidden("[data-control=truncation]") and page.is_hidden("[data-control=class]")
    page.fill("#frames", "6")
    page.click("#interpolate")
    page.wait_for_selector("#results img.animation")
    assert page.get_attribute("#results img.animation", "src").startswith("data:image/gif;base64,")
    page.select_option("#model", "p2p")
    assert page.is_hidden("#sample-controls") and page.is_visible("#image-controls")
    (tmp_path / "in.png").write_bytes(png_bytes(24, 24))
    page.set_input_files("#upload", str(tmp_path / "in.png"))
    page.click("#translate")
    page.wait_for_function("document.querySelectorAll('#results img').length === 2")
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    page.set_input_files("#upload", str(tmp_path / "bad.png"))
    page.click("#translate")
    page.wait_for_selector("#error:not([hidden])")
    assert "not an image" in page.inner_text("#error")  # the server's message, shown on the page
    assert outside == []
