"""The web page at ``GET /`` in a real browser: headless Debian Chromium driven by Selenium with
Debian's chromedriver, against a real uvicorn server on 127.0.0.1. The test uploads an image
through the file input, waits for the labels and an attention overlay, and checks them against
the offline ``Predictor``.

Without chromium, chromedriver or selenium the test is skipped, unless ``SSGRL_REQUIRE_BROWSER=1``
(CI sets it): then it fails.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ssgrl.cli import main
from ssgrl.data.decode import open_image
from ssgrl.data.registry import load_split
from ssgrl.inference.output import prediction_record
from ssgrl.inference.predictor import Predictor
from ssgrl.inference.server import BackgroundServer, create_app

pytestmark = pytest.mark.slow  # fits the tiny config once (module fixture)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
DATA = {"num_train": 48, "num_val": 16, "num_test": 16, "image_size": 96}
CHROMIUM = os.environ.get("SSGRL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SSGRL_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT_S = 60.0


def browser_missing() -> list[str]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return missing


def start_browser(window: tuple[int, int] = (1400, 900)) -> Any:
    """Headless Chromium under Debian's chromedriver (no driver download: both paths given)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={window[0]},{window[1]}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browser_ready() -> None:
    """Skip (or, with SSGRL_REQUIRE_BROWSER=1, fail) before anything is fitted."""
    missing = browser_missing()
    if missing:
        message = f"no browser to test the page with: missing {', '.join(missing)}"
        if os.environ.get("SSGRL_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (SSGRL_REQUIRE_BROWSER=1)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def checkpoint(browser_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config's best checkpoint (the same one test_server.py fits, when both run)."""
    ckpt = tmp_path_factory.getbasetemp() / "serve-tiny" / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        run = ["fit", "--config", str(TINY), "--run_dir", str(ckpt.parents[1])]
        assert main([*run, "--trainer.enable_progress_bar", "false"]) == 0
    return ckpt


@pytest.fixture
def browser(browser_ready: None) -> Iterator[Any]:
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


def percent(style: str, prop: str) -> float:
    """``prop``'s value in an inline style such as "width: 28.9%;"."""
    match = re.search(rf"{prop}:\s*([0-9.]+)%", style)
    assert match, f"no {prop} percentage in {style!r}"
    return float(match.group(1))


def overlay_label(driver: Any) -> str | None:
    """The label whose overlay is shown, once the PNG has loaded."""
    return driver.execute_script(
        "const o = document.getElementById('overlay');"
        "return (!o.hidden && o.complete && o.naturalWidth > 0) ? (o.dataset.label || null) : null;"
    )


def test_page_shows_labels_thresholds_and_overlay(
    browser: Any, checkpoint: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image_path = tmp_path / "scene.png"
    load_split("synthetic", "test", **DATA).load_image(0).save(image_path)
    reference = Predictor(checkpoint)
    probs = reference.predict_images([open_image(image_path)])[0]
    expected = prediction_record("scene.png", probs, reference.class_names, reference.thresholds)

    with BackgroundServer(create_app(Predictor(checkpoint))) as server:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, WAIT_S)
        wait.until(lambda d: "classes" in d.find_element(By.ID, "model-info").text)
        browser.find_element(By.ID, "file").send_keys(str(image_path))

        rows = wait.until(
            lambda d: (
                (r := d.find_elements(By.CSS_SELECTOR, "#labels .label-row"))
                and len(r) == len(reference.class_names)
                and r
            )
        )
        # every class, in the order of the offline scores, with its threshold marked
        names = [row.find_element(By.CSS_SELECTOR, ".name").text for row in rows]
        assert names == [entry["label"] for entry in expected["labels"]]
        highlighted = [
            r.get_attribute("data-label")
            for r in browser.find_elements(By.CSS_SELECTOR, "#labels .label-row.predicted")
        ]
        assert highlighted == expected["predicted"]
        for row, entry in zip(rows, expected["labels"], strict=True):
            fill = row.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style")
            mark = row.find_element(By.CSS_SELECTOR, ".threshold").get_attribute("style")
            assert abs(percent(fill, "width") - 100 * entry["score"]) <= 0.006
            assert abs(percent(mark, "left") - 100 * entry["threshold"]) <= 0.006
            shown = float(row.find_element(By.CSS_SELECTOR, ".score").text)
            assert abs(shown - entry["score"]) <= 0.005 + 1e-9

        # the overlay of the best label comes by itself; a click shows another label's
        first = (
            expected["predicted"][0] if expected["predicted"] else expected["labels"][0]["label"]
        )
        wait.until(lambda d: overlay_label(d) == first)
        other = expected["labels"][2]["label"]
        browser.find_element(By.CSS_SELECTOR, f'.label-row[data-label="{other}"]').click()
        wait.until(lambda d: overlay_label(d) == other)
        size = browser.execute_script(
            "const o = document.getElementById('overlay'); return [o.naturalWidth, o.naturalHeight];"
        )
        assert size[0] > 96 and size[1] > 96
        selected = browser.find_elements(By.CSS_SELECTOR, ".label-row.selected")
        assert [s.get_attribute("data-label") for s in selected] == [other]
        assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")

        shot = tmp_path / "web_page.png"
        assert browser.save_screenshot(str(shot))
    from PIL import Image

    picture = Image.open(shot)
    assert picture.format == "PNG" and picture.width >= 800
    assert np.asarray(picture.convert("L")).std() > 5  # not a blank page


def test_page_reports_a_bad_file(browser: Any, checkpoint: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with BackgroundServer(create_app(Predictor(checkpoint))) as server:
        browser.get(server.url + "/")
        browser.find_element(By.ID, "file").send_keys(str(bad))
        status = WebDriverWait(browser, WAIT_S).until(
            lambda d: (
                "error" in (s := d.find_element(By.ID, "status")).get_attribute("class").split()
                and s
            )
        )
        assert "broken.png" in status.text and "not an image" in status.text
        assert not browser.find_elements(By.CSS_SELECTOR, "#labels .label-row")


def test_api_docs_render_without_internet(browser: Any, checkpoint: Path) -> None:
    """/docs renders every endpoint of the API with scripts the server itself serves (CI has no
    route to a CDN, so a page that fetched one would stay blank)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with BackgroundServer(create_app(Predictor(checkpoint))) as server:
        browser.get(server.url + "/docs")
        paths = WebDriverWait(browser, WAIT_S).until(
            lambda d: (
                {e.text for e in d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
                >= {"/predict", "/explain", "/health", "/classes"}
                and {e.text for e in d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
            )
        )
        assert "/" not in paths  # the web page itself is not part of the API description
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);"
        )
        assert loaded and all(url.startswith(server.url + "/") for url in loaded), loaded
