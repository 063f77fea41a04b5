"""The typing page at /demo, driven in headless Chromium against the real server.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them). Without them the test is skipped and says why, unless
``NEXTWORD_REQUIRE_BROWSER=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import httpx
import pytest
import torch

from bench.launcher import Server
from models.bundle import load_bundle
from models.tokenizer import shown
from tests.http_calls import predict

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
    wait.until(lambda _: suggestions() and all(word.startswith("rel") for word in exact_suggestions(browser)))
    assert status().startswith('completing "rel"'), status()
    assert not browser.find_element(By.ID, "key-form").is_displayed()  # no key set: the page never asks
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


HOLD_FETCH = """
// Hold the answer to the next /predict_next request whose text ends in `arguments[0]` until
// window.releaseHeld() is called, and let no abort cancel it: then only the page's own
// check of which request is the newest can keep its stale answer off the screen.
const suffix = arguments[0];
const realFetch = window.fetch.bind(window);
let release;
window.held = new Promise((resolve) => { release = resolve; });
window.heldSent = false;
window.releaseHeld = () => release();
window.fetch = async (path, options) => {
  const inputs = JSON.parse(options.body).inputs;
  if (!window.heldSent && path === "/predict_next" && inputs[0].text.endsWith(suffix)) {
    window.heldSent = true;
    const { signal, ...unabortable } = options;
    const response = await realFetch(path, unabortable);
    const body = await response.text();  // read now: once released, the page's handler runs in microtasks
    await window.held;
    return new Response(body, { status: response.status, headers: response.headers });
  }
  return realFetch(path, options);
};
"""


def page_state(browser) -> tuple[list[str], str]:
    return browser.execute_script(
        "return [[...document.querySelectorAll('#suggestions li')].map(e => e.dataset.word),"
        " document.getElementById('typing-status').textContent]"
    )


def test_a_stale_answer_is_never_shown(browser, server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    browser.get(f"{server.url}/demo")
    wait.until(lambda _: page_state(browser)[1].startswith("next word"))  # the empty box's own answer
    browser.execute_script(HOLD_FETCH, "rel")
    box = browser.find_element(By.ID, "typing")
    box.send_keys("the game was rel")
    wait.until(lambda _: browser.execute_script("return window.heldSent"))  # its answer is held
    box.send_keys("ea")
    wait.until(lambda _: page_state(browser)[1].startswith('completing "relea"'))  # the newer answer is shown
    newer = page_state(browser)
    # Released; a task queued after it runs once the page's handler, all microtasks, is done with it.
    browser.execute_script("window.releaseHeld(); return new Promise((done) => setTimeout(done, 0))")
    assert page_state(browser) == newer  # the older answer, arrived last, changed nothing


def exact_suggestions(browser) -> list[str]:
    """The strip's words that start with what was typed: those not marked as corrections of a typo."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#suggestions li:not(.correction)')].map(e => e.dataset.word)"
    )


def put_text(browser, text: str) -> None:
    browser.execute_script(
        "const box = document.getElementById('typing'); box.value = arguments[0];"
        " box.dispatchEvent(new Event('input'));",
        text,
    )


def test_the_page_keeps_suggesting_on_a_text_of_20000_characters(browser, server: Server) -> None:
    """Over NEXTWORD_MAX_TEXT_CHARS (2,000) ten times: the page asks for the end of the text only."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server.url}/demo")
    long_text = "The game was released in North America on the same day as the film . " * 290
    assert len(long_text) >= 20_000
    put_text(browser, long_text)
    wait = WebDriverWait(browser, 15)
    # The answer to this text, not the empty box's before it: it says that only its end was read.
    wait.until(lambda _: page_state(browser)[1].endswith("(reading the last 128 words)"))
    words, status = page_state(browser)
    assert words and status.startswith("next word"), (words, status)
    put_text(browser, long_text + "The game was rel")
    wait.until(lambda _: page_state(browser)[1].startswith('completing "rel"'))
    assert all(word.startswith("rel") for word in exact_suggestions(browser))


def test_words_typed_past_give_their_slots_to_others(browser, server: Server, client: httpx.Client) -> None:
    """At each letter of a word the page leaves out the words it showed at the word's earlier letters
    (sent as exclude): the list is the API's answer without them. A deleted letter starts afresh."""
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    browser.get(f"{server.url}/demo")

    def answer(text: str, exclude: list[str]) -> dict:
        ask = {"text": text, "top_k": 5, "complete": True, "truncate": 128, "exclude": exclude}
        return predict(client, ask)[0]

    passed: list[str] = []
    for text in ("the game was ", "the game was r", "the game was re"):
        expected = answer(text, passed)
        put_text(browser, text)
        wait.until(lambda _, expected=expected: page_state(browser)[0] == [p["word"] for p in expected["predictions"]])
        passed += [p["token"] for p in expected["predictions"]]
    shown_again = answer("the game was r", [])  # back a letter: the list is the plain answer again
    put_text(browser, "the game was r")
    wait.until(lambda _: page_state(browser)[0] == [p["word"] for p in shown_again["predictions"]])
    assert answer("the game was re", [])["predictions"] != answer("the game was re", passed)["predictions"]


def test_a_mistyped_word_is_offered_marked_as_a_correction(browser, server: Server, tiny_model_tag: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    vocab = load_bundle(tiny_model_tag, torch.device("cpu"), torch.float32).vocab
    word = next(w for w in vocab.words if len(w) >= 6 and w.isalpha() and w.islower())
    browser.get(f"{server.url}/demo")
    put_text(browser, f"the game was {word[:2]}{word[3]}{word[2]}{word[4:]}")  # two keys swapped
    corrections = "return [...document.querySelectorAll('#suggestions li.correction')].map(e => e.dataset.word)"
    WebDriverWait(browser, 15).until(lambda _: word in browser.execute_script(corrections))


def test_an_error_is_shown_in_the_status_line(browser, server: Server) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server.url}/demo")
    put_text(browser, "word " * 220_000)  # 1.1 MB: a body over NEXTWORD_MAX_BODY_BYTES, refused with 413
    WebDriverWait(browser, 15).until(lambda _: page_state(browser)[1].startswith("no suggestions: "))
    assert "body" in page_state(browser)[1], page_state(browser)


@pytest.mark.parametrize(
    ("text", "fragment", "token", "expected"),
    [
        ("the game was rel", "rel", "released", "the game was released "),  # a completion replaces its fragment
        ("In 1990 ", None, ",", "In 1990, "),  # punctuation attaches to the word before
        ("the players ", None, "'s", "the players's "),  # as do the clitics
        ("it was a well ", None, "@-@", "it was a well-"),  # an in-word joiner: no space on either side
        ("it was a well-", None, "known", "it was a well-known "),  # and the next word follows it directly
        ("He said ", None, "(", "He said ("),  # an opening bracket: the next word joins it
    ],
)
def test_taking_a_suggestion_joins_it_as_a_person_writes_it(
    browser, server: Server, text: str, fragment: str | None, token: str, expected: str
) -> None:
    """The page's own accept(), as Tab and clicks call it, on a suggestion as the server words it."""
    written = shown(token)
    prediction = {"word": written.text, "token": token, "joins_previous": written.joins_previous}
    prediction |= {"joins_next": written.joins_next, "probability": 0.5}
    browser.get(f"{server.url}/demo")
    value = browser.execute_script(
        "const box = document.getElementById('typing'); box.value = arguments[0];"
        " shown = { fragment: arguments[1], predictions: [arguments[2]] }; accept(arguments[2]); return box.value;",
        text,
        fragment,
        prediction,
    )
    assert value == expected


KEY = "nw-page-test-9c2e"


@pytest.fixture(scope="module")
def keyed_server(tiny_model_tag: str) -> Iterator[Server]:
    with Server(env={"NEXTWORD_MODEL": tiny_model_tag, "NEXTWORD_DEVICE": "cpu", "NEXTWORD_API_KEY": KEY}) as server:
        yield server


def test_with_a_key_set_the_page_asks_for_it_once_and_then_works(browser, keyed_server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    browser.get(f"{keyed_server.url}/demo")
    key_form = browser.find_element(By.ID, "key-form")
    wait.until(lambda _: key_form.is_displayed())  # the first suggestion request got a 401
    assert "API key" in page_state(browser)[1]

    key_input = browser.find_element(By.ID, "api-key")
    key_input.send_keys("not-the-key")
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait.until(lambda _: key_form.is_displayed() and "not valid" in page_state(browser)[1])  # asked again

    key_input.send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    box = browser.find_element(By.ID, "typing")
    box.send_keys("the game was rel")
    wait.until(lambda _: page_state(browser)[1].startswith('completing "rel"') and page_state(browser)[0])
    assert not key_form.is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('nextword-api-key')") == KEY  # this tab only

    browser.find_element(By.CSS_SELECTOR, "#generate-form button").click()  # the second box sends it too
    continuation = browser.find_element(By.ID, "continuation")
    wait.until(lambda _: continuation.find_elements(By.CSS_SELECTOR, ".generated"))
    browser.execute_script("sessionStorage.clear()")


RECORD_SESSIONS = """
window.sessions = [];
const realFetch = window.fetch.bind(window);
window.fetch = (path, options) => {
  window.sessions.push(options.headers["x-session-id"]);
  return realFetch(path, options);
};
"""


def test_each_tab_sends_its_own_session_key_with_every_request(browser, server: Server) -> None:
    """The key a proxy hashes to keep a person on the replica that caches their text (X-Session-ID)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def typed_sessions() -> list[str]:
        browser.get(f"{server.url}/demo")
        browser.execute_script(RECORD_SESSIONS)
        browser.find_element(By.ID, "typing").send_keys("the game was")
        browser.find_element(By.CSS_SELECTOR, "#generate-form button").click()
        WebDriverWait(browser, 15).until(lambda _: len(browser.execute_script("return window.sessions")) >= 2)
        return browser.execute_script("return window.sessions")

    first = typed_sessions()
    assert len(set(first)) == 1 and re.fullmatch(r"[0-9a-f]{32}", first[0])  # suggestions and /generate alike
    assert set(typed_sessions()) == set(first)  # the same tab, reloaded: the same session
    browser.switch_to.new_window("tab")
    try:
        other = typed_sessions()
        assert len(set(other)) == 1 and other[0] != first[0]  # another tab: another person, or text
    finally:
        browser.close()
        browser.switch_to.window(browser.window_handles[0])
