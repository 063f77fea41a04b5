"""The typing page at /demo, driven in headless Chromium against the real server.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them). Without them the test is skipped and says why, unless
``NEXTWORD_REQUIRE_BROWSER=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import httpx
import pytest

from bench.launcher import Server

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (CHROMIUM and CHROMEDRIVER):
        reason = "headless Chromium is not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("NEXTWORD_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_is_static_and_self_contained(client: httpx.Client) -> None:
    page = client.get("/demo/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset, kind in (("demo.js", "javascript"), ("demo.css", "text/css")):
        response = client.get(f"/demo/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


def test_typing_completes_a_word_and_tab_accepts_it(browser, server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def suggestions() -> list[str]:  # read in one script: the list may be redrawn between two calls
        return browser.execute_script(
            "return [...document.querySelectorAll('#suggestions li')].map(e => e.dataset.word)"
        )

    def status() -> str:
        return browser.find_element(By.ID, "typing-status").text

    wait = WebDriverWait(browser, 15)
    browser.get(f"{server.url}/demo")
    box = browser.find_element(By.ID, "typing")
    box.send_keys("the game was rel")
    wait.until(lambda _: suggestions() and all(word.startswith("rel") for word in suggestions()))
    assert status().startswith('completing "rel"'), status()
    first = suggestions()[0]

    box.send_keys(Keys.TAB)
    assert box.get_attribute("value") == f"the game was {first} "
    assert browser.switch_to.active_element == box  # Tab took the suggestion, not the focus
    wait.until(lambda _: status().startswith("next word (a line break: ") and suggestions())
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#suggestions .bar span')].map(e => e.style.width)"
    )
    assert widths[0] == "100%" and all(float(w.rstrip("%")) <= 100 for w in widths)

    # A click takes the clicked word (an alphabetic one: punctuation attaches without a space).
    words = suggestions()
    index, word = next((i, w) for i, w in enumerate(words) if w.isalpha())
    browser.find_elements(By.CSS_SELECTOR, "#suggestions li button")[index].click()
    assert box.get_attribute("value") == f"the game was {first} {word} "
    wait.until(lambda _: not browser.execute_script("return document.activeElement.id !== 'typing'"))
    assert status().startswith("next word")  # the click's own request answered too, without an error


def test_the_second_box_continues_a_prompt(browser, server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server.url}/demo")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("He was born in")
    browser.find_element(By.CSS_SELECTOR, "#generate-form button").click()
    continuation = browser.find_element(By.ID, "continuation")
    WebDriverWait(browser, 15).until(lambda _: continuation.find_elements(By.CSS_SELECTOR, ".generated"))
    assert continuation.text.startswith("He was born in")
    generated = browser.execute_script("return document.querySelector('#continuation .generated').textContent")
    shown = browser.execute_script("return document.getElementById('continuation').textContent")
    assert generated.strip() and shown == "He was born in" + generated  # the page adds no joint of its own
    assert generated[0] == " " or not generated[0].isalnum()  # the server's text brings the joining space
