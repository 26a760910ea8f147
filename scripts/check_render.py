"""Open the built book in headless Chromium and check every chapter renders.

Checks every page of the table of contents: HTTP 200 for the page and every image, every <img> decoded
(naturalWidth > 0), no error output cells (tracebacks), the expected tables and figures on chapter pages,
every math element typeset by MathJax (served from the build, no CDN) and no raw TeX left in the text, no
progress-bar output rendered, no console errors beyond a short allow-list. Saves screenshots to
_build/screenshots/. Exit status 1 on any failure.
"""

from __future__ import annotations

import functools
import http.server
import re
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
CHAPTERS = {"book/01_at_a_glance.html": {"tables": 2, "images": 2}, "book/reproduce.html": {"tables": 1, "images": 0},
            "book/intro.html": {"tables": 0, "images": 0},
            "book/02_measuring_mutual_information.html": {"tables": 5, "images": 2},
            "book/03_effective_ues_reduce_mi.html": {"tables": 4, "images": 2},
            "book/04_deeper_networks_lower_mi.html": {"tables": 2, "images": 1},
            "book/05_sharpness_aware_learnability.html": {"tables": 2, "images": 2},
            "book/06_theorems_on_examples.html": {"tables": 2, "images": 4},
            "book/07_notes_on_the_papers.html": {"tables": 5, "images": 2},
            "book/08_at_the_paper_sample_size.html": {"tables": 9, "images": 1},
            "book/11_adversarial_training.html": {"tables": 1, "images": 1},
            "book/12_augmentations_and_purifications.html": {"tables": 7, "images": 1},
            "book/13_what_makes_miue_work.html": {"tables": 10, "images": 2},
            "book/14_how_transferable.html": {"tables": 3, "images": 1}}
# theme noise, and resource failures (checked below per request: local ones fail the check, external ones
# — MathJax's CDN on an offline machine — are reported only)
ALLOWED_CONSOLE = ("THEBE_JS_URL", "favicon", "invalid theme mode", "Failed to load resource")
PROGRESS = re.compile(r"\d+%\|[█▏▎▍▌▋▊▉ ]*\||\d+(\.\d+)?(s/it|it/s)\]")
RAW_TEX = re.compile(r"\\(frac|log|mathbb|mathrm|sum|operatorname|left|right)\b|\$[^$\n]{1,80}\\[a-zA-Z]+[^$\n]*\$")


def toc_pages() -> list[str]:
    """Every page of _toc.yml as its built HTML path (root first)."""
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [c["file"] for c in part.get("chapters", [])]
    return [p + ".html" for p in pages]


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-headless-shell") if Path(p).exists()), None)


def main() -> int:
    from playwright.sync_api import sync_playwright
    if CHROMIUM is None:
        print("check_render: Debian's chromium is not installed (apt-get install chromium)")
        return 1
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    failures = []
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        pages = toc_pages()
        missing = set(CHAPTERS) - set(pages)
        if missing:
            failures.append(f"pages expected but not in _toc.yml: {sorted(missing)}")
        for rel in pages:
            want = CHAPTERS.get(rel, {"tables": 0, "images": 0})
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            console, bad = [], []
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            external = []
            page.on("response", lambda r: bad.append(f"{r.status} {r.url}")
                    if r.status >= 400 and r.url.startswith(base) and "favicon" not in r.url else None)
            page.on("requestfailed", lambda r: (bad if r.url.startswith(base) else external).append(r.url))
            resp = page.goto(base + rel, wait_until="networkidle")
            try:  # MathJax typesets asynchronously: wait for it to finish where the page has math
                page.wait_for_function("() => !window.MathJax || !MathJax.startup || "
                                       "MathJax.startup.promise.then(() => true)", timeout=15000)
                page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
            except Exception:  # noqa: BLE001 - reported by the math count below
                pass
            if resp is None or resp.status != 200:
                failures.append(f"{rel}: HTTP {resp.status if resp else 'no response'}")
                continue
            broken = page.eval_on_selector_all("img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)")
            n_img = page.eval_on_selector_all("main img", "els => els.length")
            n_tab = page.eval_on_selector_all("main table", "els => els.length")
            errors = page.eval_on_selector_all(".output.traceback, .output.error, pre.traceback, .ansi-red-fg",
                                               "els => els.length")
            text = page.inner_text("main")
            n_math = page.eval_on_selector_all("main .math", "els => els.length")
            n_typeset = page.eval_on_selector_all("main .math", "els => els.filter(e => e.querySelector('mjx-container')).length")
            if n_typeset < n_math:
                failures.append(f"{rel}: {n_math - n_typeset} of {n_math} math elements not typeset by MathJax")
            raw = RAW_TEX.search(text)
            if raw:
                failures.append(f"{rel}: raw TeX in the rendered text: {raw.group(0)!r}")
            bar = PROGRESS.search(text)
            if bar:
                failures.append(f"{rel}: a progress bar is rendered on the page: {bar.group(0)!r}")
            if broken:
                failures.append(f"{rel}: broken images {broken}")
            if n_img < want["images"]:
                failures.append(f"{rel}: {n_img} images, expected at least {want['images']}")
            if n_tab < want["tables"]:
                failures.append(f"{rel}: {n_tab} tables, expected at least {want['tables']}")
            if errors or "Traceback (most recent call last)" in text:
                failures.append(f"{rel}: error output cells on the page")
            if bad:
                failures.append(f"{rel}: failed requests {bad}")
            real = [c for c in console if not any(a in c for a in ALLOWED_CONSOLE)]
            if real:
                failures.append(f"{rel}: console errors {real}")
            page.screenshot(path=str(shots / (Path(rel).stem + ".png")), full_page=True)
            print(f"check_render: {rel}: {n_tab} tables, {n_img} images, {len(broken)} broken, "
                  f"{n_typeset}/{n_math} math typeset"
                  + (f"; offline, not loaded: {sorted(set(external))}" if external else ""))
            page.close()
        browser.close()
    server.shutdown()
    for f in failures:
        print("check_render FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
