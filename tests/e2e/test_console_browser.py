"""The console in a real headless Chromium (Debian's, driven by selenium through Debian's
chromedriver): sign-in, a tenant's tasks and steps, another tenant sees neither, live
updates without a reload, CSRF refused, sign-out, a tool call denied from its task's
page; a screenshot of each page.

Screenshots go to a temporary folder; with ``TETHER_UPDATE_SCREENSHOTS=1`` they replace
``docs/console/*.png`` (the pictures in ``docs/console.md``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import console_agents
import httpx
import pytest
import server_support as support
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.alert import Alert
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from store_view import call_with_store
from waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"


@dataclass
class Site:
    srv: support.Running
    acme: str
    globex: str
    operator: str
    research: dict[str, object]
    billing: dict[str, object]
    theirs: dict[str, object]
    shots: Path


def _submit(client: httpx.Client, agent: str, text: str) -> dict[str, object]:
    sid = client.post("/v1/sessions", json={"agent": agent}).json()["id"]
    task: dict[str, object] = client.post(f"/v1/sessions/{sid}/tasks", json={"input": text}).json()
    return task


def _ended(client: httpx.Client, task: dict[str, object]) -> dict[str, object]:
    def check() -> dict[str, object] | None:
        body: dict[str, object] = client.get(f"/v1/tasks/{task['id']}").json()
        return body if body["status"] in ("completed", "failed", "cancelled") else None

    return wait_until(check, timeout=30, what=f"task {task['id']} to end")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'console.db'}"
    acme, globex = support.make_key(url, "acme"), support.make_key(url, "globex")
    operator = support.make_operator_key(url)
    shots = DOCS if os.environ.get("TETHER_UPDATE_SCREENSHOTS") == "1" else None
    shots = shots or tmp_path_factory.mktemp("screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    settings = replace(support.fast_settings(), drain_grace=0.5)
    with support.serve_in_thread(
        url, workflows=console_agents.runtime.workflows, execution=settings
    ) as srv:
        a, g = srv.client(acme), srv.client(globex)
        research = _ended(a, _submit(a, "research", "How do leases and fencing work?"))
        # a long second turn fills the context past 80%; the third one is summarised
        for text in (
            "And what happens to a slow worker's writes? " + "Some detail. " * 70,
            "Thanks. Once more, briefly: what does the epoch do?",
        ):
            path = f"/v1/sessions/{research['session_id']}/tasks"
            assert _ended(a, a.post(path, json={"input": text}).json())["status"] == "completed"
        billing = _ended(a, _submit(a, "billing", "40"))
        _ended(a, _submit(a, "steps", "12:0.02"))
        theirs = _ended(g, _submit(g, "steps", "3"))
        # a recovery: the lease of a running task expires, a worker resumes it
        moved = _submit(a, "steps", "8:0.1")
        wait_until(
            lambda: len(a.get(f"/v1/tasks/{moved['id']}").json()["steps"]) >= 2,
            timeout=20,
            what="two steps of the task to recover",
        )
        call_with_store(url, lambda s: s.expire_lease(str(moved["id"])))
        _ended(a, moved)
        yield Site(srv, acme, globex, operator, research, billing, theirs, shots)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1360,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=DriverService(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(browser: WebDriver, site: Site, path: str) -> None:
    browser.get(site.srv.url + path)


def _sign_in(browser: WebDriver, site: Site, key: str, *, here: bool = False) -> None:
    """Sign in on the sign-in page (``here``: the one the browser was sent to)."""
    if not here:
        _open(browser, site, "/console/login")
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.ID, "sign-in").click()
    wait_until(lambda: browser.find_elements(By.ID, "sign-out"), what="the signed-in page")


def _sign_out(browser: WebDriver) -> None:
    browser.find_element(By.ID, "sign-out").click()
    wait_until(lambda: browser.find_elements(By.ID, "key"), what="the sign-in page")


def _shot(browser: WebDriver, site: Site, name: str) -> Path:
    """The whole page: the window grows to the page's height first (capped)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1360, min(max(int(height) + 140, 600), 2600))
    path = site.shots / f"{name}.png"
    assert browser.save_screenshot(str(path)), f"no screenshot {path}"
    browser.set_window_size(1360, 900)
    assert path.stat().st_size > 10_000
    return path


def _confirmed_click(browser: WebDriver, label: str) -> None:
    """Click a button that asks first, and say yes (as an operator would)."""
    browser.find_element(By.XPATH, f"//button[text()='{label}']").click()
    alert = wait_until(lambda: _alert(browser), timeout=10, what="the confirmation")
    alert.accept()


def _alert(browser: WebDriver) -> Alert | None:
    try:
        return browser.switch_to.alert
    except NoAlertPresentException:
        return None


def _text(browser: WebDriver) -> str:
    return str(browser.find_element(By.TAG_NAME, "body").text)


def test_a_tenant_sees_its_tasks_and_steps_live_and_signs_out(
    site: Site, browser: WebDriver
) -> None:
    _open(browser, site, "/console/tasks")
    assert "/console/login" in browser.current_url
    _shot(browser, site, "login")
    _sign_in(browser, site, site.acme, here=True)
    assert browser.current_url.endswith("/console/tasks")

    listed = _text(browser)
    assert str(site.research["id"]) in listed and str(site.theirs["id"]) not in listed
    browser.execute_script("window.stillHere = true")
    fresh = _submit(site.srv.client(site.acme), "steps", "2")
    wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-task="{fresh["id"]}"]'),
        timeout=20,
        what="the new task's row to appear without a reload",
    )
    assert browser.execute_script("return window.stillHere") is True
    _shot(browser, site, "tasks")

    browser.find_element(By.LINK_TEXT, str(site.research["id"])).click()
    wait_until(lambda: browser.find_elements(By.ID, "step-0"), what="the task's steps")
    steps = browser.find_elements(By.CSS_SELECTOR, ".step")
    assert len(steps) == 5  # model, tool, model, tool, model
    page = _text(browser)
    assert "lookup" in page and "2 attempts" in page and f"{site.research['id']}:3" in page
    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    _shot(browser, site, "task")
    _open(browser, site, f"/console/tasks/{site.research['id']}/steps/3")
    full = _text(browser)
    assert '"input": {' in full and '"name": "lookup"' in full and "fencing" in full

    _open(browser, site, f"/console/sessions/{site.research['session_id']}")
    conversation = _text(browser)
    assert "calls lookup" in conversation and "notes on fencing" in conversation
    assert "The user asked how leases and fencing work" in conversation  # the summary
    assert "2 compaction(s) in all" in conversation and "folded into the summary" in conversation
    assert browser.find_elements(By.CSS_SELECTOR, ".ctxmark")
    _shot(browser, site, "session")

    _open(browser, site, f"/console/tasks/{site.billing['id']}")
    failed = _text(browser)
    assert "InvalidInput" in failed and "What to do" in failed
    _shot(browser, site, "task-failed")

    _sign_out(browser)
    _open(browser, site, f"/console/tasks/{site.research['id']}")
    assert "/console/login" in browser.current_url


def test_another_tenant_sees_neither_the_tasks_nor_the_steps(
    site: Site, browser: WebDriver
) -> None:
    _sign_in(browser, site, site.globex)
    _open(browser, site, "/console/tasks")
    listed = _text(browser)
    assert str(site.theirs["id"]) in listed
    assert str(site.research["id"]) not in listed and str(site.billing["id"]) not in listed
    _open(browser, site, f"/console/tasks/{site.research['id']}")
    assert "Error 404" in _text(browser) and "lookup" not in _text(browser)
    _open(browser, site, f"/console/sessions/{site.research['session_id']}")
    assert "Error 404" in _text(browser)
    api = site.srv.client(site.globex).get(f"/v1/tasks/{site.research['id']}")
    assert api.status_code == 404
    _sign_out(browser)


def test_csrf_is_refused_and_events_arrive_live(site: Site, browser: WebDriver) -> None:
    _sign_in(browser, site, site.operator)
    _shot(browser, site, "overview")
    overview = _text(browser)
    assert "Step funnel" in overview and "research" in overview and "recovery" in overview

    api = site.srv.client(site.acme)
    long = _submit(api, "steps", "60:0.25")
    path = f"/console/tasks/{long['id']}"
    wait_until(
        lambda: api.get(f"/v1/tasks/{long['id']}").json()["status"] == "running",
        timeout=20,
        what="the long task to run",
    )
    _open(browser, site, path)
    seen = len(browser.find_elements(By.CSS_SELECTOR, "#events tr"))
    wait_until(
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#events tr.fresh")) >= 2,
        timeout=20,
        what="events to arrive without a reload",
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#events tr")) > seen

    browser.execute_script(
        "document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged')"
    )
    _confirmed_click(browser, "Cancel task")
    wait_until(lambda: "Error 403" in _text(browser), what="the refusal page")
    assert "CSRF" in _text(browser)
    assert api.get(f"/v1/tasks/{long['id']}").json()["status"] == "running"

    _open(browser, site, path)
    _confirmed_click(browser, "Cancel task")
    wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#task-status .st-cancelled"),
        timeout=20,
        what="the status to turn cancelled without a reload",
    )
    assert api.get(f"/v1/tasks/{long['id']}").json()["status"] == "cancelled"
    _sign_out(browser)


def test_a_waiting_tool_call_is_denied_from_its_page(site: Site, browser: WebDriver) -> None:
    api = site.srv.client(site.acme)
    asked = _submit(api, "refunds", "Refund order A-1042, please.")
    wait_until(
        lambda: api.get(f"/v1/tasks/{asked['id']}").json()["status"] == "waiting",
        timeout=20,
        what="the refund to wait for approval",
    )
    _sign_in(browser, site, site.acme)
    _open(browser, site, f"/console/tasks/{asked['id']}")
    box = browser.find_element(By.ID, "waiting").text
    assert "refund" in box and '"order": "A-1042"' in box and "Approve" in box
    browser.find_element(By.ID, "deny-reason").send_keys("refunds over 30 EUR need a manager")
    _shot(browser, site, "task-waiting")
    browser.find_element(By.ID, "deny").click()
    wait_until(
        lambda: api.get(f"/v1/tasks/{asked['id']}").json()["status"] == "completed",
        timeout=20,
        what="the denied task to finish",
    )
    _open(browser, site, f"/console/tasks/{asked['id']}")
    assert not browser.find_elements(By.ID, "waiting")
    assert "refunds over 30 EUR need a manager" in _text(browser)  # what the model read
    _sign_out(browser)
