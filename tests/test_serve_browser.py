"""The page in a real headless Chromium (Debian's `chromium` and `chromium-driver`), driven by Selenium.

FMNIST_SERVE_MODEL=CHECKPOINT serves that model instead of an untrained one, and
FMNIST_SERVE_SCREENSHOT=FILE also saves the final screenshot there (how docs/serve-page.png is made), and
FMNIST_SERVE_EXPLAIN_SCREENSHOT=FILE the one with the heatmap shown (docs/evaluation/page-explain.png).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from support import mosaic, product_photo, running_server, tiny_checkpoint, trusted_checkpoint

from fmnist.data import CLASSES
from fmnist.testing.browser import CHROMEDRIVER, CHROMIUM, MISSING, chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=MISSING),
]


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path / "chromium-profile")
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


@pytest.mark.slow
def test_upload_a_photo_and_draw(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    model = Path(os.environ.get("FMNIST_SERVE_MODEL") or tiny_checkpoint(tmp_path / "tiny.pt"))
    photo = tmp_path / "trousers.jpg"
    photo.write_bytes(product_photo("trouser", size=(480, 640)))
    with running_server(model) as server:
        expected = httpx.post(
            f"{server.url}/predict?input=1",
            content=photo.read_bytes(),
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        ).json()["predictions"][0]

        browser.get(server.url + "/")
        wait_for(browser, lambda d: "mlp" in d.find_element(By.ID, "model-info").text)
        browser.find_element(By.ID, "file-input").send_keys(str(photo))
        answer = browser.find_element(By.ID, "answer")
        wait_for(browser, lambda d: answer.text)
        assert answer.text == expected["class_name"]  # the page shows what the API answers for this photo
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
        assert len(bars) == 5 and bars[0].find_element(By.CLASS_NAME, "name").text == expected["class_name"]
        photo_view = browser.find_element(By.ID, "input-view").get_attribute("src")
        assert photo_view == expected["input"]  # the 28x28 view the model saw
        browser.save_screenshot(str(tmp_path / "photo.png"))

        toggle = browser.find_element(By.ID, "explain")
        toggle.click()  # the same photo again, with the heatmap of what drove the answer
        wait_for(browser, lambda d: d.find_element(By.ID, "why").is_displayed())
        heatmap = browser.find_element(By.ID, "heatmap-view")
        assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
        assert "integrated gradients" in heatmap.get_attribute("title") and answer.text == expected["class_name"]
        if os.environ.get("FMNIST_SERVE_EXPLAIN_SCREENSHOT"):
            browser.save_screenshot(os.environ["FMNIST_SERVE_EXPLAIN_SCREENSHOT"])
        toggle.click()
        wait_for(browser, lambda d: not d.find_element(By.ID, "why").is_displayed())

        browser.find_element(By.ID, "tab-draw").click()
        canvas = browser.find_element(By.ID, "canvas")
        strokes = ActionChains(browser).move_to_element_with_offset(canvas, -60, -100).click_and_hold()
        for dx, dy in ((0, 60), (0, 60), (0, 60), (40, 0), (20, -60), (20, 60), (40, 0), (0, -60), (0, -60), (0, -60)):
            strokes = strokes.move_by_offset(dx, dy)
        strokes.release().perform()
        browser.find_element(By.ID, "classify-drawing").click()
        wait_for(browser, lambda d: d.find_element(By.ID, "input-view").get_attribute("src") != photo_view)
        assert answer.text in CLASSES
        assert browser.find_element(By.ID, "error").is_displayed() is False
        browser.save_screenshot(str(tmp_path / "drawing.png"))
        assert (tmp_path / "drawing.png").stat().st_size > 10_000
        if os.environ.get("FMNIST_SERVE_SCREENSHOT"):
            browser.find_element(By.ID, "tab-photo").click()
            browser.find_element(By.ID, "file-input").send_keys(str(photo))
            wait_for(browser, lambda d: d.find_element(By.ID, "input-view").get_attribute("src") == photo_view)
            browser.save_screenshot(os.environ["FMNIST_SERVE_SCREENSHOT"])


@pytest.mark.slow
def test_a_picture_that_is_not_clothing_gets_its_own_answer(browser, tmp_path):
    from selenium.webdriver.common.by import By

    photo = tmp_path / "clutter.jpg"
    photo.write_bytes(mosaic())
    with running_server(trusted_checkpoint(tmp_path / "trusted.pt")) as server:
        expected = httpx.post(
            f"{server.url}/predict", content=photo.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30
        ).json()["predictions"][0]
        assert expected["garment"] is False
        browser.get(server.url + "/")
        wait_for(browser, lambda d: "mlp" in d.find_element(By.ID, "model-info").text)
        browser.find_element(By.ID, "file-input").send_keys(str(photo))
        answer = browser.find_element(By.ID, "answer")
        wait_for(browser, lambda d: answer.text)
        assert answer.text == "This doesn't look like clothing"
        guess = browser.find_element(By.ID, "best-guess").text
        assert f"Best guess: {expected['class_name']}" in guess
        assert "not-garment" in browser.find_element(By.ID, "result").get_attribute("class")


@pytest.mark.slow
def test_a_photo_from_the_camera(browser, tmp_path):
    from selenium.webdriver.common.by import By

    with running_server(tiny_checkpoint(tmp_path / "tiny.pt")) as server:
        browser.get(server.url + "/")
        camera = browser.find_element(By.ID, "camera")
        wait_for(browser, lambda d: camera.is_displayed())
        camera.click()
        wait_for(browser, lambda d: d.execute_script("return document.querySelector('#camera-view').videoWidth") > 0)
        assert camera.text == "Take the photo"
        camera.click()
        answer = browser.find_element(By.ID, "answer")
        wait_for(browser, lambda d: answer.text)
        assert answer.text in CLASSES and camera.text == "Use the camera"
        assert browser.find_element(By.ID, "photo-preview").get_attribute("src").startswith("blob:")
