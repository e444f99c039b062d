"""Check the built HTML book: no broken internal links, and what a reader sees in a real browser.

    python scripts/check_book.py [--html _build/html] [--screenshots _build/screenshots]

1. Links: every internal ``href`` of every page points to a file that exists, and a ``#fragment``
   to an element id on that page (Sphinx's -W catches broken cross-references; this also catches
   links written by hand and assets that did not get copied).
2. Browser: headless Chromium (Debian's ``chromium``, driven by Playwright) opens the landing page
   and two chapters, served over HTTP on localhost, and takes full-page screenshots. On each
   chapter every figure must have loaded (``naturalWidth > 0``) and there must be at least one, and
   the page must carry its "launch in Colab" link pointing at the repository in ``_config.yml``.

Exits with status 1 and a list of the problems if anything fails.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGES = {  # screenshot name -> page, and whether it is a chapter with figures and a launch button
    "index": ("book/intro.html", False),
    "chapter1": ("book/01_why_prefix_tuning.html", True),
    "chapter4": ("book/04_past_key_values.html", True),
    "chapter7": ("book/07_training_a_prefix.html", True),
}
MATH_PAGES = {"chapter4"}  # pages whose display math must have been typeset by MathJax
# After MathJax has run: how many formulas it typeset, and any TeX left raw in the text.
MATH_SCRIPT = """async () => {
    if (window.MathJax && MathJax.startup) await MathJax.startup.promise;  // only pages with math load it
    const text = document.querySelector("main, article, body").innerText;
    return {typeset: document.querySelectorAll("mjx-container").length,
            raw: (text.match(/\\\\(begin|frac|mathrm)\\{?/g) || []).slice(0, 3)};
}"""
BROWSER_ARGS = [  # as this machine's probe runs Chromium: no sandbox as root, no background network
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if tag == "a" and values.get("name"):
            self.ids.add(values["name"])
        for key in ("href", "src"):
            if tag in ("a", "link", "img", "script") and values.get(key):
                self.hrefs.append(values[key])


@functools.cache
def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(errors="replace"))
    return parser


def broken_links(html: Path) -> list[str]:
    """Internal links of every page under ``html`` that point to no file or no element id."""
    problems = []
    for page in sorted(html.rglob("*.html")):
        if page.relative_to(html).parts[0] == "_static":  # the themes' template fragments, not pages
            continue
        for href in _parse(page).hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            name = page.relative_to(html)
            if not target.is_file():
                problems.append(f"{name}: {href} -> no such file")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _parse(target).ids:
                problems.append(f"{name}: {href} -> no element with id {parts.fragment!r}")
    return problems


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def check_in_browser(html: Path, screenshots: Path, repository: str) -> list[str]:
    """Open the pages in headless Chromium, take screenshots, check figures and launch buttons."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return ["Chromium not found: install Debian's package (apt-get install chromium)"]
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    screenshots.mkdir(parents=True, exist_ok=True)
    problems = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            remote = []  # the book must render offline: nothing may be fetched from another host
            page.on("request", lambda r: remote.append(r.url) if not r.url.startswith((base, "data:")) else None)
            for name, (path, is_chapter) in PAGES.items():
                response = page.goto(f"{base}/{path}", wait_until="load")
                if response is None or not response.ok:
                    problems.append(f"{path}: HTTP {response.status if response else 'no response'}")
                    continue
                math = page.evaluate(MATH_SCRIPT)
                if math["raw"]:
                    problems.append(f"{path}: TeX not rendered: {math['raw']}")
                if name in MATH_PAGES and not math["typeset"]:
                    problems.append(f"{path}: no formula typeset by MathJax")
                page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
                title = page.title()
                images = page.eval_on_selector_all(
                    "main img, article img",
                    "els => els.map(e => ({src: e.src.slice(0, 60), ok: e.complete && e.naturalWidth > 0}))",
                )
                broken = [i["src"] for i in images if not i["ok"]]
                colab = page.eval_on_selector_all("a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
                print(
                    f"{path}: '{title}', {len(images)} figures, {math['typeset']} formulas, {len(colab)} Colab link(s)",
                    flush=True,
                )
                if broken:
                    problems.append(f"{path}: figures that did not load: {broken}")
                if is_chapter:
                    if not images:
                        problems.append(f"{path}: no figures on the page")
                    expected = f"colab.research.google.com/github/{urlsplit(repository).path.strip('/')}/blob/"
                    if not any(expected in href and href.endswith(Path(path).stem + ".ipynb") for href in colab):
                        problems.append(f"{path}: no launch button to {expected}...{Path(path).stem}.ipynb")
            browser.close()
            if remote:
                problems.append(f"requests to other hosts (the book must work offline): {sorted(set(remote))[:5]}")
    finally:
        server.shutdown()
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    args = parser.parse_args()
    if not (args.html / "index.html").is_file():
        sys.exit(f"{args.html} holds no built book: run `make book` first")
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    problems = broken_links(args.html)
    pages = len([p for p in args.html.rglob("*.html") if p.relative_to(args.html).parts[0] != "_static"])
    print(f"links: {pages} pages checked, {len(problems)} broken", flush=True)
    problems += check_in_browser(args.html, args.screenshots, repository)
    if problems:
        print("\n".join(["The book has problems:", *problems]), file=sys.stderr)
        sys.exit(1)
    print(f"screenshots in {args.screenshots}", flush=True)


if __name__ == "__main__":
    main()
