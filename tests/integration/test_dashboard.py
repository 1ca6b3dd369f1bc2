"""The web dashboard in real headless Chromium (Debian's `chromium`, driven by Playwright).

Skipped where either is missing; `.ci/run` installs both."""

from __future__ import annotations

import http.client
import os
import pwd
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import RunningDaemon, wait_for
from tests.integration.users import as_user, free_port, open_to_others

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def web(make_daemon: Callable[..., RunningDaemon]) -> tuple[RunningDaemon, str]:
    port = free_port()
    daemon = make_daemon(gpus="sim:2x24GiB", top_config=f'tcp = "127.0.0.1:{port}"\n')
    return daemon, f"http://127.0.0.1:{port}"


def screenshot(page: Any, name: str) -> None:
    """Refresh the README's pictures on demand: GPUGATE_SCREENSHOTS=1 pytest ..."""
    if os.environ.get("GPUGATE_SCREENSHOTS"):
        page.screenshot(path=str(Path(__file__).parents[2] / "docs" / "img" / name))


def signed_in(browser: Any, url: str, token: str) -> Any:
    # the page forbids eval (its CSP); Playwright's wait_for_function needs it
    page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page.goto(f"{url}/#token={token}")
    page.wait_for_selector("#gpu-0")
    return page


def root_token(daemon: RunningDaemon) -> str:
    return daemon.client.create_token().token


def test_the_page_shows_the_gpus_and_follows_the_load(browser: Any, web: Any) -> None:
    daemon, url = web
    page = signed_in(browser, url, root_token(daemon))
    assert "simulated GPUs" in page.inner_text("#backend")
    assert page.inner_text("#who") == "signed in as root (admin)"
    daemon.cli("sim", "load", "--gpu", "1", "--mem", "6GiB", "--util", "55", check=True)
    page.wait_for_function(
        "document.querySelector('#gpu-1 .util').textContent.startsWith('utilization 55%')"
    )
    assert "memory 6.0 GiB of 24.0 GiB" in page.inner_text("#gpu-1 .mem")
    assert "(not gpugate's) 6.0 GiB" in page.inner_text("#gpu-1 .users")
    strict = browser.new_page()  # the page works under its own CSP (no bypass)
    strict.goto(f"{url}/#token={root_token(daemon)}")
    strict.wait_for_selector("#gpu-1 .users:has-text('6.0 GiB')")
    screenshot(page, "dashboard.png")


def test_a_job_from_the_cli_appears_with_its_reason_and_the_page_cancels_it(
    browser: Any, web: Any
) -> None:
    daemon, url = web
    for gpu in (0, 1):
        daemon.cli("sim", "load", "--gpu", str(gpu), "--mem", "20GiB", "--name", f"x{gpu}")
    waiting = daemon.cli("submit", "--mem", "10GiB", "--", "sleep", "30", check=True)
    job = int(waiting.stdout.split()[1]) if waiting.stdout.startswith("job ") else None
    assert job is not None, waiting.stdout
    page = signed_in(browser, url, root_token(daemon))
    row = page.locator(f"tr[data-job='{job}']")
    row.wait_for()
    assert "GPU0 mem" in row.locator("td.reason").inner_text()
    row.locator("button[data-action='cancel']").click()
    daemon.wait_state(job, "cancelled")


def test_another_users_jobs_show_no_actions(
    browser: Any, web: Any, other_user: pwd.struct_passwd
) -> None:
    daemon, url = web
    open_to_others(daemon)
    roots = daemon.submit("sleep 30", gpus=0, hold=True)
    theirs = as_user(other_user, daemon, "submit", "sleep 30", "0", "hold")["id"]
    token = str(as_user(other_user, daemon, "token")["token"])
    page = signed_in(browser, url, token)
    page.locator(f"tr[data-job='{theirs}']").wait_for()
    assert page.locator(f"tr[data-job='{theirs}'] button").count() == 2  # release, cancel
    assert page.locator(f"tr[data-job='{roots}'] button").count() == 0
    assert f"signed in as {other_user.pw_name}" == page.inner_text("#who")


def test_the_job_page_streams_its_log(browser: Any, web: Any) -> None:
    daemon, url = web
    gate = daemon.home / "gate"
    job = daemon.submit(
        f"echo first line; while [ ! -e {gate} ]; do sleep 0.1; done; echo second line",
        gpus=0,
    )
    daemon.wait_state(job, "running")
    page = signed_in(browser, url, root_token(daemon))
    page.goto(f"{url}/#job/{job}")
    page.wait_for_function("document.querySelector('#log')?.textContent.includes('first line')")
    gate.touch()  # the page is not reloaded: the line must arrive on the open stream
    page.wait_for_function("document.querySelector('#log').textContent.includes('second line')")
    screenshot(page, "dashboard-job.png")
    wait_for(lambda: daemon.state(job) == "succeeded")


def test_the_page_needs_no_token_but_the_data_does(web: Any) -> None:
    _, url = web
    port = int(url.rsplit(":", 1)[1])
    for path, status in (("/", 200), ("/static/app.js", 200), ("/v1/jobs", 401)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path)
        assert conn.getresponse().status == status, path
        conn.close()


def test_the_job_page_charts_its_gpu_use(browser: Any, web: Any) -> None:
    daemon, url = web
    job = daemon.submit_using(6, 35, seconds=30)
    wait_for(lambda: daemon.client.job_usage(job).usage.points, what="the job's use")
    page = signed_in(browser, url, root_token(daemon))
    page.goto(f"{url}/#job/{job}")
    page.wait_for_function("document.querySelector('#job-use')?.textContent.includes('35%')")
    assert "6.0 GiB memory (expected 6.0 GiB" in page.inner_text("#job-use")
    assert page.locator("#job-util").count() == 1
    daemon.client.cancel(job)
