"""``moodwire demo --keep-running`` prints the dashboard URL and keeps the page and API reachable until Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_keep_running_serves_the_dashboard(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli.demo",
            "--runner",
            "local",
            "--duration",
            "10",
            "--rate",
            "10",
            "--keep-running",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any("stack is up" in line for line in lines):
            assert proc.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, (
                "demo never reached --keep-running:\n" + "".join(lines)[-3000:]
            )
            time.sleep(0.5)
        time.sleep(0.5)
        urls = re.findall(r"dashboard: (http://\S+/)", "".join(lines))
        assert urls, "".join(lines)[-3000:]
        url = urls[-1]
        time.sleep(3)  # the replay is over: the page stays up while the demo keeps running
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and b"moodwire" in resp.read()
        with urllib.request.urlopen(url + "api/v1/summary?window=1h", timeout=10) as resp:
            assert json.load(resp)["totals"]["events"] > 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:]
    assert "demo finished" in out
