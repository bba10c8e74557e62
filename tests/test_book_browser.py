"""The built book, in a real browser with no network.

Builds the HTML from the committed notebooks (no execution), serves it on 127.0.0.1, opens every
chapter in headless Chromium (Debian's ``chromium`` and ``chromium-driver``) with every host but
127.0.0.1 unresolvable, and fails if a plotly figure drew no SVG, a page raised a JavaScript
error or asked for anything off this machine, math did not typeset, or a widget did not render.
"""

from __future__ import annotations

import functools
import http.server
import json
import posixpath
import re
import shutil
import threading
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from lib.tooling.book import is_progress_bar
from lib.tooling.runner import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc.get("chapters", [])]


@pytest.fixture(scope="module")
def built():
    """The HTML folder of the book built from the committed notebooks."""
    from lib.tooling.book import build_book

    return build_book(None, label="browser-test", log=lambda *a: None)


@pytest.fixture(scope="module")
def site(built):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver")
    html = built

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _chromium(width: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--window-size={width},1000",
                # no network: every host except this machine fails to resolve
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = _chromium(1280)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def narrow_browser():
    """A window of 800 px, where the book's figures are narrowest."""
    driver = _chromium(800)
    yield driver
    driver.quit()


def expected_figures(page: str) -> int:
    """The numbered figures a page should carry: its cells with myst-nb figure metadata."""
    if not (ROOT / f"{page}.ipynb").exists():
        return 0
    nb = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
    return sum("figure" in c.metadata.get("mystnb", {}) for c in nb.cells)


def expected_outputs(page: str) -> tuple[int, int, int, bool]:
    """Plotly figures, widget views, image widgets and whether there is math, from the notebook
    (or, for a page that is no notebook, from its MyST source)."""
    if not (ROOT / f"{page}.ipynb").exists():
        return 0, 0, 0, "$" in (ROOT / f"{page}.md").read_text()
    nb = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    images = sum(m.get("model_name") == "ImageModel" for m in state.get("state", {}).values())
    figures = widgets = 0
    math = False
    for cell in nb.cells:
        if cell.cell_type == "markdown" and "$" in cell.source:
            math = True
        if {"remove-cell", "remove-output"} & set(cell.metadata.get("tags", [])):
            continue  # not on the page (chapter 1's live widgets stay in Jupyter and Colab)
        for out in cell.get("outputs", []):
            if is_progress_bar(out):  # dropped from the built pages (lib.tooling.book.quiet_notebook)
                continue
            data = out.get("data", {})
            figures += "plotly-graph-div" in str(data.get("text/html", ""))
            widgets += "application/vnd.jupyter.widget-view+json" in data
    return figures, widgets, images if widgets else 0, math


PAGE_STATE_JS = r"""
const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
return {
  plotly: divs.length,
  drawn: divs.filter(d => d.querySelector('svg.main-svg')).length,
  plotlyLoaded: typeof window.Plotly !== 'undefined',
  widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
  widgetsRendered: document.querySelectorAll('.widget-box, .widget-inline-hbox, .widget-image, .jupyter-widgets.widget-vbox').length,
  widgetImages: Array.from(document.querySelectorAll('img.widget-image, .widget-image img, img.jupyter-widgets'))
      .filter(i => i.complete && i.naturalWidth > 0).length,
  math: document.querySelectorAll('mjx-container').length,
  rawRoles: (document.querySelector('main') || document.body).innerText
      .match(/\{(cite|ref|eq|numref|glue)(:[a-z]+)?\}`/g) || [],
  // numbered figures: myst-nb's figure metadata wraps the output in <figure> with a caption
  captions: Array.from(document.querySelectorAll('main figure figcaption .caption-number'))
      .map(c => c.innerText.trim()),
  missingGlue: (document.querySelector('main') || document.body).innerText
      .match(/glue key .* not found|UNKNOWN GLUE/gi) || [],
  toggles: document.querySelectorAll('main .cell.tag_hide-input details.hide').length,
  // sphinxcontrib-bibtex's citation links carry the entry's text as their title
  citations: document.querySelectorAll('main a.reference.internal[title][href*="#id"]').length,
  entries: document.querySelectorAll('main [role="doc-biblioentry"]').length,
  progressBars: document.querySelectorAll('.widget-progress, progress').length,
};
"""


def test_index_redirects_to_the_first_chapter(site, browser):
    browser.get(f"{site}/index.html")
    deadline = time.time() + 10
    while not browser.current_url.endswith(f"{toc_pages()[0]}.html") and time.time() < deadline:
        time.sleep(0.2)
    assert browser.current_url.endswith(f"{toc_pages()[0]}.html")
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_offline(site, browser, page):
    n_figures, n_widgets, n_images, has_math = expected_outputs(page)
    path = f"{page}.html"
    browser.get_log("browser")
    browser.get_log("performance")
    browser.get(f"{site}/{path}")
    deadline = time.time() + 45
    while True:
        state = browser.execute_script(PAGE_STATE_JS)
        done = (state["drawn"] >= n_figures and state["widgetImages"] >= n_images
                and state["widgetsRendered"] >= min(n_widgets, 1)
                and (state["math"] > 0 or not has_math))
        if done or time.time() > deadline:
            break
        time.sleep(0.5)

    logs = browser.get_log("browser")
    errors = [e["message"] for e in logs if e["level"] == "SEVERE"]
    assert not errors, f"JavaScript errors on {path}: {errors}"
    requests = []
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            requests.append(msg["params"]["request"]["url"])
    off_machine = [u for u in requests
                   if not u.startswith(("http://127.0.0.1", "data:", "blob:", "about:"))]
    assert not off_machine, f"{path} asked the network for {off_machine}"

    assert state["plotlyLoaded"], f"plotly.js did not load on {path}"
    assert state["plotly"] == n_figures, f"{path}: {state['plotly']} figures in the page, {n_figures} in the notebook"
    assert state["drawn"] == n_figures, f"{path}: only {state['drawn']} of {n_figures} plotly figures drew an SVG"
    if n_widgets:
        assert state["widgetViews"] >= n_widgets
        assert state["widgetsRendered"] >= 1, f"{path}: widgets did not render"
    assert state["widgetImages"] >= n_images, f"{path}: {state['widgetImages']} of {n_images} image widgets drew"
    if has_math:
        assert state["math"] > 0, f"{path}: math did not typeset"
    assert not state["rawRoles"], f"{path}: roles left as raw text: {state['rawRoles']}"
    assert state["progressBars"] == 0, f"{path}: a frozen progress bar"
    n_captions = expected_figures(page)
    assert len(state["captions"]) == n_captions, \
        f"{path}: {len(state['captions'])} numbered captions, {n_captions} figures"
    assert all(re.fullmatch(r"Fig\. (\d+|A)\.\d+", c) for c in state["captions"]), state["captions"]
    keys = sum(len(g.split(",")) for g in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`",
                                                      (ROOT / f"{page}.md").read_text()))
    assert state["citations"] == keys, f"{path}: {state['citations']} citation links, {keys} cited"
    if page.endswith("references"):
        entries = len(re.findall(r"^@\w+\{", (ROOT / "references.bib").read_text(), re.M))
        assert state["entries"] == entries, f"{path}: {state['entries']} of {entries} works listed"


def _anchor_links(built, anchors: str) -> dict:
    """Check that every link to an anchor matching ``anchors`` (a regex) lands on a page that has
    it; return how many links there are per anchor prefix (``eq``, ``fig``, ``sec``)."""
    pages = {p.relative_to(built).as_posix(): p.read_text() for p in built.rglob("*.html")}
    counts = {}
    for name, text in pages.items():
        for target, anchor in re.findall(rf'href="([^"#]*)#({anchors})"', text):
            page = posixpath.normpath(posixpath.join(posixpath.dirname(name), target)) \
                if target else name
            assert page in pages, f"{name} links {target}#{anchor}: no such page"
            assert f'id="{anchor}"' in pages[page], f"{name} links {page}#{anchor}: no such anchor"
            counts[anchor.split("-")[0]] = counts.get(anchor.split("-")[0], 0) + 1
    return counts


def test_equation_links_land_on_the_equation(built):
    """Every link to an equation label points at a page that has that label's anchor."""
    # the chapters mention the paper's equations about forty times
    assert _anchor_links(built, r"eq-\d+").get("eq", 0) >= 30


def test_figure_and_section_links_land_on_their_targets(built):
    """Every link to a figure (the paper's figure number as its text) and every link to a
    section points at a page that has that anchor."""
    counts = _anchor_links(built, r"(?:fig|sec)-[\w-]+")
    assert counts.get("fig", 0) >= 30 and counts.get("sec", 0) >= 10, counts


def test_collapsed_code_opens_with_its_toggle(site, browser):
    """A collapsed (hide-input) cell's code is hidden until its toggle is clicked."""
    from selenium.webdriver.common.by import By

    browser.get(f"{site}/book/02_correlation.html")
    details = browser.find_elements(By.CSS_SELECTOR, "main .cell.tag_hide-input details.hide")
    assert details, "no collapsed cell on the page"
    first = details[0]
    code = first.find_element(By.CSS_SELECTOR, "pre")
    assert not code.is_displayed()
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", first)
    first.find_element(By.CSS_SELECTOR, "summary").click()
    deadline = time.time() + 5
    while not code.is_displayed() and time.time() < deadline:
        time.sleep(0.1)
    assert code.is_displayed(), "the toggle did not show the code"


@pytest.mark.parametrize("page", [p for p in toc_pages() if expected_outputs(p)[0]])
def test_no_figure_text_collides_at_1280_and_800_px(site, browser, narrow_browser, page):
    """tests/figure_overlap.js on every figure of the page, in a wide and a narrow window: no two
    texts overlap, none leaves its figure or hides under a legend or colour bar, and no log axis
    is labelled "2" at 0.02 (tests/test_figure_layout.py shows the check fails on a planted
    collision)."""
    from figure_check import describe, figure_problems

    found = {width: [describe(p) for p in figure_problems(driver, f"{site}/{page}.html")]
             for width, driver in ((1280, browser), (800, narrow_browser))}
    assert not any(found.values()), "\n".join(f"{w} px, {p}" for w, ps in found.items() for p in ps)
