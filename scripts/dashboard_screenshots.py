"""The README's dashboard pictures: a scene on two simulated GPUs (jobs, changing outside
load, a blocked job, a dependency), photographed in headless Chromium after 90 s.

    .venv/bin/python scripts/dashboard_screenshots.py     # needs /usr/bin/chromium
"""

import os
import subprocess
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
home = Path(tempfile.mkdtemp(prefix="gpugate-scene-"))
(home / "config.toml").write_text('tcp = "127.0.0.1:8766"\n')
env = {**os.environ, "GPUGATE_HOME": str(home), "XDG_CONFIG_HOME": str(home / "cfg")}
g = str(ROOT / ".venv" / "bin" / "gpugate")


TRAIN = (
    "gpugate sim use --mem 12GiB --util 45 &&"
    " for i in $(seq 1 400); do echo step $i loss 0.$((900-i)); sleep 0.5; done"
)
EVAL = "gpugate sim use --mem 8GiB --util 30 && sleep 300"


def run(*a: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([g, *a], env=env, capture_output=True, text=True, cwd="/tmp")


run("serve", "--gpus", "sim:2x24GiB", "--detach")
run(
    "submit",
    "--mem",
    "12GiB",
    "--util",
    "45",
    "--name",
    "train-resnet",
    "--",
    TRAIN,
)
time.sleep(8)
run(
    "submit",
    "--mem",
    "8GiB",
    "--util",
    "30",
    "-p",
    "2",
    "--name",
    "eval",
    "--",
    EVAL,
)
for step in range(18):
    run(
        "sim",
        "load",
        "--gpu",
        "1",
        "--mem",
        f"{4 + (step % 6) * 2}GiB",
        "--util",
        str(20 + (step % 5) * 12),
        "--name",
        "jupyter",
    )
    if step == 6:
        run(
            "submit", "--mem", "20GiB", "--util", "60", "-p", "1", "--", "python sweep.py --lr 3e-4"
        )
        run("submit", "--after", "1", "--mem", "4GiB", "--", "python export.py")
    time.sleep(5)
run("token")
token = (home / "cfg" / "gpugate" / "token").read_text().strip()
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = b.new_page(viewport={"width": 1280, "height": 820})
    page.goto(f"http://127.0.0.1:8766/#token={token}")
    page.wait_for_selector("#jobs tbody tr")
    page.select_option("#window", "120")
    page.wait_for_timeout(2500)
    page.screenshot(path=str(ROOT / "docs" / "img" / "dashboard.png"))
    page.goto("http://127.0.0.1:8766/#job/1")
    page.wait_for_timeout(2500)
    page.evaluate("document.getElementById('job').scrollIntoView()")
    page.screenshot(path=str(ROOT / "docs" / "img" / "dashboard-job.png"))
    b.close()
subprocess.run(["kill", (home / "gpugate.pid").read_text().strip()])
