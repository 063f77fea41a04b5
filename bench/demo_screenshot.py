"""Take docs/demo.png: the typing page in headless Chromium, after a short text, on a stored model.

Usage::

    python -m bench.demo_screenshot --model nextword:latest [--text "Yesterday I went to the "] [--out docs/demo.png]

Starts the real server on a free loopback port, types the text into the
page as a person would, waits for the suggestions to follow it and saves
the screenshot. Needs Debian's ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from bench.launcher import Server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_screenshot", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="nextword:latest", help="model tag in the BentoML store")
    parser.add_argument("--text", default="Yesterday I went to the ", help="what to type into the page")
    parser.add_argument("--prompt", default="I think that", help="the prompt the second box continues")
    parser.add_argument("--out", default="docs/demo.png")
    args = parser.parse_args(argv)
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        print("error: apt-get install chromium chromium-driver", file=sys.stderr)
        return 2
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,900"):
        options.add_argument(argument)
    with Server(env={"NEXTWORD_MODEL": args.model}) as server:
        browser = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            browser.get(f"{server.url}/demo")
            box = browser.find_element(By.ID, "typing")
            box.send_keys(args.text)
            time.sleep(1)  # past the page's debounce, so the status below is the typed text's
            wait = WebDriverWait(browser, 30)
            wait.until(lambda _: browser.find_element(By.ID, "typing-status").text.startswith("next word"))
            prompt = browser.find_element(By.ID, "prompt")
            prompt.clear()
            prompt.send_keys(args.prompt)
            browser.find_element(By.CSS_SELECTOR, "#generate-form button").click()
            wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#continuation .generated"))
            words = [e.get_attribute("data-word") for e in browser.find_elements(By.CSS_SELECTOR, "#suggestions li")]
            print(f"after {args.text!r}: {words}")
            print(f"continuation: {browser.find_element(By.ID, 'continuation').text!r}")
            browser.save_screenshot(args.out)
        finally:
            browser.quit()
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
