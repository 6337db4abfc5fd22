"""The console in a real headless browser (Debian's Chromium through WebDriver).

A user's whole round: create a branch in the page, write to it with pymongo,
find the change in the history, compare the branch with main, merge it with
one conflict resolved in the page, and look at the collection as it was.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from ..processes import Process
from ..stacks import own_stack
from .http import base_url
from .stacks import ANA, guarded_stack

Client = MongoClient[dict[str, Any]]
WAIT = 60  # seconds a page may take to show what it was asked for (a loaded machine)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def proxy() -> Iterator[Process]:
    with own_stack() as (_up, proxy):
        yield proxy


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="argon-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(driver: WebDriver, what: str, css: str, text: str = "") -> WebElement:
    """The first element matching ``css`` (holding ``text``), once the page shows it."""

    def found(d: WebDriver) -> WebElement | None:
        for element in d.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed() and text in element.text:
                return element
        return None

    wait = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
    element = wait.until(found, f"the page never showed {what}")
    assert element is not None  # until() returns only what is truthy
    return element


def click(driver: WebDriver, what: str, css: str, text: str = "") -> None:
    """Click what ``until`` finds, again if the page redrew it meanwhile."""

    def clicked(d: WebDriver) -> bool:
        until(d, what, css, text).click()
        return True

    wait = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(clicked, f"could not click {what}")


def fill(driver: WebDriver, field: str, value: str) -> None:
    box = driver.find_element(By.ID, field)
    box.clear()
    box.send_keys(value)


def tab(driver: WebDriver, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#tabs button[data-tab="{name}"]').click()


def test_branch_history_diff_merge_and_time_travel_in_the_page(
    proxy: Process, browser: WebDriver
) -> None:
    with Client(proxy.uri, appname="web-test") as client:
        client.shop.items.insert_many([{"_id": i, "price": 10 * i} for i in range(1, 4)])
        browser.get(base_url(proxy) + "/")
        until(browser, "the main branch", ".branch", "main")

        fill(browser, "create-name", "web-dev")
        browser.find_element(By.ID, "create-button").click()
        until(browser, "the new branch in the tree", ".branch", "web-dev")
        until(browser, "the confirmation", "#message", "Created branch web-dev")

        branch = client["shop@web-dev"].items
        branch.update_one({"_id": 2}, {"$set": {"price": 25}})  # theirs
        branch.insert_one({"_id": 9, "price": 90})
        client.shop.items.update_one({"_id": 2}, {"$set": {"price": 21}})  # ours
        before_merge = client.admin.command({"argon": "status"})["lsn"]

        # History: the branch's update, field by field, and who made it.
        click(browser, "the branch", ".branch", "web-dev")
        until(browser, "the branch's details", "#branch-title", "web-dev")
        tab(browser, "history")
        entry = until(browser, "the update in the history", ".entry", "update shop.items 2")
        assert "web-test" in entry.text
        cells = [td.text for td in entry.find_elements(By.CSS_SELECTOR, "tbody td")]
        assert cells == ["price", "20", "25"]
        fill(browser, "history-doc", "9")
        fill(browser, "history-db", "shop")
        fill(browser, "history-collection", "items")
        browser.find_element(By.CSS_SELECTOR, "#history-form button").click()
        until(browser, "the insert alone", ".entry", "insert shop.items 9")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#history .entry")) == 1

        # Diff: main against the branch.
        tab(browser, "diff")
        fill(browser, "diff-from", "main")
        fill(browser, "diff-to", "web-dev")
        browser.find_element(By.CSS_SELECTOR, "#diff-form button").click()
        block = until(browser, "the diff", ".diff-collection", "shop.items")
        assert "1 added, 0 removed, 1 modified" in block.text
        rows = [r.text for r in block.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert "2 modified price 21 25" in rows

        # Merge: preview, one conflict resolved in the page (theirs), applied.
        tab(browser, "merge")
        fill(browser, "merge-source", "web-dev")
        fill(browser, "merge-into", "main")
        browser.find_element(By.CSS_SELECTOR, "#merge-form button").click()
        until(browser, "the preview", "#merge-summary", "conflicts: 1, open: 1")
        conflict = until(browser, "the conflict", ".conflict-entry", "shop.items 2")
        sides = [d.text for d in conflict.find_elements(By.CSS_SELECTOR, ".conflict > div")]
        assert '"price": 20' in sides[0] and '"price": 21' in sides[1] and '"price": 25' in sides[2]
        conflict.find_element(By.CSS_SELECTOR, ".take-theirs").click()
        until(browser, "the resolution", "#merge-summary", "conflicts: 1, open: 0")
        click(browser, "the apply button", "#apply-merge")
        until(browser, "the applied merge", "#merge-summary", "Applied merge")
        assert list(client.shop.items.find({}, sort=[("_id", 1)])) == [
            {"_id": 1, "price": 10},
            {"_id": 2, "price": 25},
            {"_id": 3, "price": 30},
            {"_id": 9, "price": 90},
        ]

        # Time travel: main as it was before the merge.
        tab(browser, "timetravel")
        fill(browser, "tt-db", "shop")
        fill(browser, "tt-collection", "items")
        fill(browser, "tt-ref", f"main@lsn-{before_merge}")
        browser.find_element(By.CSS_SELECTOR, "#tt-form button").click()
        past = f"3 documents at main@lsn-{before_merge}"
        until(browser, "the past documents", "#timetravel p", past)
        shown = browser.find_element(By.ID, "timetravel").text
        assert '"price": 21' in shown and '"price": 25' not in shown


@pytest.fixture(scope="module")
def guarded() -> Iterator[Process]:
    with guarded_stack() as proxy:
        yield proxy


def test_with_auth_the_console_asks_for_a_login_and_keeps_to_the_users_rights(
    guarded: Process, browser: WebDriver
) -> None:
    browser.get(base_url(guarded) + "/")
    until(browser, "the login form", "#login", "Log in")
    assert not browser.find_element(By.ID, "app").is_displayed()

    fill(browser, "login-user", ANA[0])
    fill(browser, "login-password", "wrong")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    until(browser, "the refusal", "#login-error", "authentication failed")
    assert not browser.find_element(By.ID, "app").is_displayed()

    fill(browser, "login-password", ANA[1])
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    until(browser, "who is signed in", "#who", "signed in as ana")
    until(browser, "the readable branch", ".branch", "exp-a")
    shown = [b.text.split("\n")[0] for b in browser.find_elements(By.CSS_SELECTOR, ".branch")]
    assert shown == ["exp-a"]  # neither main nor other: ana may not read them

    fill(browser, "create-name", "ana-new")
    fill(browser, "create-from", "exp-a")
    browser.find_element(By.ID, "create-button").click()
    until(browser, "the refusal", "#message", "Unauthorized (13)")
