"""The web page in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by selenium) loads
/, uploads an image, waits for the overlay, checks the segment list against the API, hovers a row and checks what the
page highlights, shows a server error, and saves a screenshot. Skipped only where Chromium is not installed (.ci/run
installs it with apt-get when it is missing)."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from mask2former.predict import bundled_examples

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,860"]


@pytest.fixture
def browser(tmp_path):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("Chromium is not installed here (apt-get install chromium chromium-driver; .ci/run does that "
                    "when it can)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver, log_output=str(tmp_path / "driver.log")),
                              options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_page_segments_an_upload_and_highlights_a_row(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    image = bundled_examples()[0]
    expected = server.post_image("/v1/segment?task=panoptic", image.read_bytes()).json()["segments"]
    wait = WebDriverWait(browser, 60)

    browser.get(server.url + "/")
    wait.until(lambda d: "6 labels" in d.find_element(By.ID, "model").text)  # /v1/model answered
    assert browser.find_element(By.ID, "task").get_attribute("value") == "panoptic"
    browser.find_element(By.ID, "file").send_keys(str(image))
    wait.until(lambda d: d.find_element(By.ID, "result").get_attribute("data-ready") == "true")

    overlay = browser.find_element(By.ID, "overlay")
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) == 261  # the overlay, not broken
    rows = browser.find_elements(By.CSS_SELECTOR, "#segments tbody tr")
    assert [row.find_element(By.CLASS_NAME, "label").text for row in rows] == [s["label"] for s in expected]
    assert [int(row.find_element(By.CLASS_NAME, "area").text.replace(",", "")) for row in rows] == \
        [s["area"] for s in expected]
    assert [row.find_element(By.CLASS_NAME, "score").text for row in rows] == [f"{s['score']:.3f}" for s in expected]
    assert "segments · panoptic · 261 × 315 px" in browser.find_element(By.ID, "status").text

    view = browser.find_element(By.ID, "view")
    for k in (1, 0):  # hovering a row highlights its segment: the page decoded the right RLE mask
        ActionChains(browser).move_to_element(rows[k]).perform()
        wanted = str(expected[k]["id"])
        wait.until(lambda d, wanted=wanted: view.get_attribute("data-highlight") == wanted)
        assert int(view.get_attribute("data-highlight-area")) == expected[k]["area"]
        assert "active" in rows[k].get_attribute("class")
    screenshot = tmp_path / "serve_page.png"
    assert browser.save_screenshot(str(screenshot))
    with Image.open(screenshot) as picture:
        assert picture.size[0] >= 1000 and len(picture.convert("L").getcolors(1 << 16) or []) > 50  # not blank
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe  # no blocked or failed loads, no script errors

    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    wait.until(lambda d: view.get_attribute("data-highlight") is None)  # leaving the list clears it

    Select(browser.find_element(By.ID, "task")).select_by_value("semantic")  # another task, same image
    wait.until(lambda d: "· semantic ·" in d.find_element(By.ID, "status").text)
    semantic = server.post_image("/v1/segment?task=semantic", image.read_bytes()).json()["segments"]
    labels = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#segments tbody td.label")]
    assert labels == [s["label"] for s in semantic]

    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not a picture")
    browser.find_element(By.ID, "file").send_keys(str(not_an_image))
    wait.until(lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"))
    assert "Error 415: the upload (13 bytes) is not an image" in browser.find_element(By.ID, "status").text
