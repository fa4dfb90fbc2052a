"""``spiegel lab`` starts a real JupyterLab on a free localhost port with a token and the
project's kernel, a headless Chromium (Debian's, through Playwright) sees the report notebooks
listed, and Ctrl-C stops the server and every process it started (a kernel included), without
a traceback. Without a warehouse it says how to make one, in one line, exit status 2."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers.cli import main
from helpers.config import NOTEBOOKS_DIR
from helpers.lab import free_port

REPORT_NOTEBOOKS = {"his_analyse.ipynb", "praktijkspiegel.ipynb", "regio.ipynb", "verkenning.ipynb",
                    "spiegelbijeenkomst.ipynb", "betaalspecificatie.ipynb", "veelgebruikers.ipynb"}


def test_without_a_warehouse_one_line_and_status_2(tmp_path, capsys):
    code = main(["lab", "--warehouse", str(tmp_path / "none.duckdb")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "make demo" in err and "spiegel ingest" in err and str(tmp_path / "none.duckdb") in err


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _descendants(root: int) -> list[tuple[int, str]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmd = ""
            out.append((child, cmd))
            todo.append(child)
    return out


def _api(url: str, token: str, method: str = "GET", body: dict | None = None) -> dict:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def lab(demo_warehouse, demo_cube, tmp_path):
    """``spiegel lab`` in a session of its own, Jupyter's own files in tmp_path; killed with
    its group at the end whatever happened."""
    port = free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    env.pop("JPY_SESSION_NAME", None)
    proc = subprocess.Popen([sys.executable, "-m", "helpers.cli", "lab", "--warehouse", str(demo_warehouse),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        yield proc, port, lines
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_lab_serves_the_notebooks_and_ctrl_c_leaves_nothing(lab):
    from playwright.sync_api import sync_playwright

    from helpers.render import CHROMIUM_FLAGS, find_chromium
    proc, port, lines = lab
    printed, url, deadline = [], None, time.time() + 300
    while url is None and time.time() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        printed.append(line)
        if "open http" in line:
            url = line.split("open ", 1)[1].strip()
    assert url, "".join(printed)
    assert url.startswith(f"http://127.0.0.1:{port}/lab?token=") and len(url.split("token=")[1]) >= 24
    token = url.split("token=")[1]

    # without the token nothing is served
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=10)
    # the server's root is notebooks/, and its kernel is this environment's Python
    names = {c["name"] for c in _api(f"http://127.0.0.1:{port}/api/contents", token)["content"]}
    assert REPORT_NOTEBOOKS <= names
    spec = _api(f"http://127.0.0.1:{port}/api/kernelspecs", token)["kernelspecs"]["python3"]["spec"]
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()
    kernel = _api(f"http://127.0.0.1:{port}/api/kernels", token, "POST", {"name": "python3"})
    assert kernel["name"] == "python3"
    # a notebook saved from the lab (JupyterLab autosaves) keeps no output: no patient row in git
    scratch = f"_spiegel_lab_save_test_{os.getpid()}.ipynb"
    executed = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"widgets": {"state": {}}}, "cells": [
        {"cell_type": "code", "id": "c1", "metadata": {}, "source": "print('x')", "execution_count": 1,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "patiënt 322638\n"}]}]}
    try:
        _api(f"http://127.0.0.1:{port}/api/contents/{scratch}", token, "PUT",
             {"type": "notebook", "format": "json", "content": executed})
        saved = json.loads((NOTEBOOKS_DIR / scratch).read_text())
        source = saved["cells"][0]["source"]
        assert ("".join(source) if isinstance(source, list) else source) == "print('x')"
        assert saved["cells"][0]["outputs"] == [] and saved["cells"][0]["execution_count"] is None
        assert "widgets" not in saved["metadata"] and "322638" not in (NOTEBOOKS_DIR / scratch).read_text()
    finally:
        (NOTEBOOKS_DIR / scratch).unlink(missing_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.wait_for_selector(".jp-DirListing-itemText >> text=verkenning.ipynb", timeout=120_000)
            listed = set(page.locator(".jp-DirListing-itemText").all_inner_texts())
        finally:
            browser.close()
    assert REPORT_NOTEBOOKS <= listed, listed
    assert listed <= {p.name for p in NOTEBOOKS_DIR.iterdir()}

    deadline = time.time() + 60
    while time.time() < deadline and not any("ipykernel" in cmd for _, cmd in _descendants(proc.pid)):
        time.sleep(0.2)
    family = _descendants(proc.pid)
    assert any("jupyterlab" in cmd for _, cmd in family), family
    assert any("ipykernel" in cmd for _, cmd in family), family
    # the token is handed over in the environment, never on a command line others can read
    assert not any(token in cmd for _, cmd in family)

    proc.send_signal(signal.SIGINT)   # Ctrl-C
    assert proc.wait(timeout=60) == 130
    time.sleep(0.5)
    rest = "".join(printed) + "".join(iter_lines(lines))
    assert "Traceback" not in rest and "stopped" in rest, rest
    survivors = [(pid, cmd) for pid, cmd in family if _alive(pid)]
    assert not survivors, survivors


def iter_lines(lines: queue.Queue):
    while True:
        try:
            yield lines.get(timeout=0.5)
        except queue.Empty:
            return
