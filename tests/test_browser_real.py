"""The results browser in a real browser: JupyterLab on localhost, Chromium driven by Playwright (opt-in).

``make test-browser`` (``pytest -m browser``). Skipped when Playwright or a Chromium binary is missing
(``apt-get install chromium``; ``pip install playwright``: Playwright cannot download browsers offline, so it is
pointed at ``KDLIB_CHROMIUM`` or ``/usr/bin/chromium``). Screenshots go to ``outputs/browser/``.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from kdlib.notebooks import ROOT

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("KDLIB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "outputs" / "browser"
TIMEOUT_MS = 180_000


def _store(root: Path) -> Path:
    """A store of constructed run records (two methods, three fractions, no KD and KD, three seeds; one failed): 31
    records, as f = 1 keeps everything (el2n and random share those)."""
    from kdlib.store import Store
    from kdlib.study import RunConfig

    st = Store(root)

    def put(record: dict) -> None:  # a current record: keyed as today's RunConfig keys it (the store checks it)
        cfg = RunConfig.from_dict(record["config"]).resolved()
        st.put("runs", cfg.key(), {**record, "config": cfg})

    for method in ("random", "el2n"):
        for f in (0.1, 0.5, 1.0):
            for alpha in (0.0, 0.5):
                for seed in (0, 1, 2):
                    cfg = {"dataset": "digits", "model": "convnet_small", "method": method, "fraction": f,
                           "alpha": alpha, "teacher": "convnet_small" if alpha else None, "teacher_fraction": 1.0,
                           "label_noise": 0.0, "seed": seed, "train": {"epochs": 15, "budget": "epochs"}}
                    if not alpha:
                        cfg.pop("teacher")
                    acc = 60 + 30 * f + 5 * alpha + seed + (3 if method == "random" else 0)
                    put({"status": "done", "config": cfg, "result": {"final_acc": acc, "best_acc": acc}})
    put({"status": "failed", "error": "loss became nan",
         "config": {"dataset": "digits", "model": "convnet_small", "method": "random", "fraction": 0.1, "alpha": 0.0,
                    "seed": 7, "train": {"epochs": 15}}})
    return root


def _notebook(folder: Path, store: Path) -> Path:
    """notebooks/browse_results.ipynb with its parameters pointed at ``store`` and an output folder in ``folder``."""
    nb = json.loads((ROOT / "notebooks" / "browse_results.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    src = "".join(cell["source"])
    src = src.replace("store = None", f"store = {str(store)!r}").replace("out_dir = None", f"out_dir = {str(folder / 'out')!r}")
    cell["source"] = src
    path = folder / "browse_results.ipynb"
    path.write_text(json.dumps(nb))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 with a token, serving a folder with the notebook; yields its URL."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set KDLIB_CHROMIUM)")
    work = tmp_path / "lab"
    work.mkdir()
    _notebook(work, _store(tmp_path / "store"))
    port, token = _free_port(), uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
           "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
                             "--LabApp.news_url=", *(["--allow-root"] if os.geteuid() == 0 else [])],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail("JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:])
        yield playwright, url, token
    finally:
        _stop(proc, log)


def _stop(proc: subprocess.Popen, log) -> None:
    """Ends a server started by a test (terminate, then kill after 20 s) and closes its log."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _offline(page) -> list:
    """Aborts every request that leaves 127.0.0.1 (the page must work offline); returns the list of those URLs."""
    blocked = []

    def route(r):
        if r.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "blob:", "data:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return blocked


def _open_page(p):
    """Chromium with the page every test uses: a large viewport, the test timeout, offline (``_offline``).
    Returns (browser, page, blocked URLs)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    page.set_default_timeout(TIMEOUT_MS)
    return browser, page, _offline(page)


def _wait_for_first_plot(page) -> None:
    """Waits until the browser's plot is drawn (its image holds a blob URL)."""
    page.wait_for_function("() => { const i = document.querySelector('.widget-image');"
                           " return i && (i.getAttribute('src') || '').startsWith('blob:'); }")


def _image_src(page) -> str:
    return page.locator(".widget-image").first.get_attribute("src") or ""


def _wait_for_new_src(page, old: str) -> str:
    page.wait_for_function("old => { const i = document.querySelector('.widget-image');"
                           " return i && i.getAttribute('src') && i.getAttribute('src') !== old; }",
                           arg=old, timeout=TIMEOUT_MS)
    return _image_src(page)


def test_browser_notebook_in_chromium(lab):
    playwright, url, token = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser, page, blocked = _open_page(p)
        page.goto(f"{url}/lab/tree/browse_results.ipynb?token={token}")
        # the kernel is ready when the status bar says so (the execution indicator says idle before a kernel exists)
        page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.locator(".widget-select-multiple").first.wait_for()
        _wait_for_first_plot(page)
        # widgets render as controls, not as their text repr
        assert page.locator(".widget-select-multiple select").count() >= 5
        assert page.get_by_role("button", name="clear filters").count() == 1
        assert page.get_by_text("ResultsBrowser object").count() == 0
        page.locator(".widget-image").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "1_all_runs.png"), full_page=True)

        # a filter redraws the plot: each redraw is a new blob URL
        first = _image_src(page)
        t0 = time.perf_counter()
        page.locator(".widget-select-multiple", has_text="method").locator("select").select_option(["el2n"])
        second = _wait_for_new_src(page, first)
        redraw_s = time.perf_counter() - t0
        table = page.locator(".widget-html-content").filter(has=page.locator("table")).last.inner_text()
        assert "method = el2n" in table  # the table follows the filter (a single-valued column is named above it)
        page.screenshot(path=str(SHOTS / "2_method_el2n.png"), full_page=True)

        # no finished run matches: a message, and no (broken) image
        page.locator(".widget-select-multiple", has_text="seed").locator("select").select_option(["7"])
        page.get_by_text("no finished runs match").first.wait_for()
        assert not page.locator(".widget-image").first.is_visible()
        page.screenshot(path=str(SHOTS / "3_no_match.png"), full_page=True)

        # clear filters brings every run back
        page.get_by_role("button", name="clear filters").click()
        _wait_for_new_src(page, second)
        page.locator(".widget-image").first.wait_for(state="visible", timeout=10_000)
        assert "of 31 runs match" in page.locator(".widget-html-content").filter(has_text="runs match").first.inner_text()
        page.screenshot(path=str(SHOTS / "4_cleared.png"), full_page=True)
        browser.close()
    print(f"a filter change was redrawn in {redraw_s:.1f} s; requests blocked (offline): {blocked or 'none'}")


def test_browser_dashboard_in_voila(tmp_path):
    """``make browse``: the notebook as a dashboard without code cells (Voila), working offline."""
    playwright = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("voila")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set KDLIB_CHROMIUM)")
    nb = _notebook(tmp_path, _store(tmp_path / "store"))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "voila.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(nb), "--no-browser", "--Voila.ip=127.0.0.1",
                             f"--port={port}"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/voila/static/", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # the server answers
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("Voila did not start: " + (tmp_path / "voila.log").read_text()[-2000:])
                time.sleep(0.5)
        with playwright.sync_playwright() as p:
            browser, page, blocked = _open_page(p)
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator(".widget-select-multiple").first.wait_for()
            _wait_for_first_plot(page)
            assert not page.get_by_text("from kdlib.browse import").first.is_visible()  # no code on the page
            first = _image_src(page)
            page.locator(".widget-select-multiple", has_text="method").locator("select").select_option(["random"])
            _wait_for_new_src(page, first)
            page.screenshot(path=str(SHOTS / "5_voila_dashboard.png"), full_page=True)
            browser.close()
        print(f"voila: requests blocked (offline): {blocked or 'none'}")
    finally:
        _stop(proc, log)
