"""Screenshot of the demo page (docs/images): serve RUN on loopback, open it in headless chromium with
every outside request refused, generate 16 images, save the page.

    PYTHONPATH=src python docs/tools/screenshot_serve.py runs/demo-dcgan docs/images/serve-demo-dcgan.png
"""

import subprocess
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

run, out, port = sys.argv[1], sys.argv[2], "7861"
server = subprocess.Popen([sys.executable, "-m", "genforge", "serve", "--run", run, "--port", port, "--threads", "1"])
base = f"http://127.0.0.1:{port}"


def local_only(route):
    url = route.request.url
    route.continue_() if url.startswith(base + "/") or url.startswith("data:") else route.abort()


try:
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/api/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        page = browser.new_page(viewport={"width": 1000, "height": 640})
        page.route("**/*", local_only)
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready=true]")
        page.fill("#n", "16")
        page.click("#generate")
        page.wait_for_function("document.querySelectorAll('#results img').length === 16")
        page.screenshot(path=out, full_page=True)
        browser.close()
finally:
    server.terminate()
    server.wait()
