"""`ssgrl report` opened in headless Chromium (Selenium, Debian's chromedriver): every section
is found by its id, every image has loaded, and the page asked for nothing outside itself.

Without chromium, chromedriver or selenium the browser test is skipped, unless
``SSGRL_REQUIRE_BROWSER=1`` (CI sets it): then it fails. The runs come from the tiny ablation
of test_compare.py (reused when both modules run in one session).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# the tiny ablation of test_compare.py, and the browser set-up of the web page's test
from test_compare import ablated
from test_web_page import browser_missing, start_browser

from ssgrl.analysis.report import SECTION_IDS, write_report
from ssgrl.cli import main
from ssgrl.viz.report_plots import operating_points

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ablated(tmp_path_factory.getbasetemp())


def test_operating_points_match_scikit_learn() -> None:
    from sklearn.metrics import precision_recall_curve

    rng = np.random.default_rng(0)
    targets = (rng.random(200) < 0.3).astype(np.int8)
    scores = np.round(rng.normal(size=200) + targets, 1)  # ties
    targets[:10] = -1  # ignored entries are left out
    curve = operating_points(scores, targets)
    assert curve is not None
    keep = targets >= 0
    p, r, t = precision_recall_curve(targets[keep], scores[keep])
    # scikit-learn: ascending thresholds plus a final (1, 0) point; ours: descending
    np.testing.assert_allclose(curve.threshold, t[::-1])
    np.testing.assert_allclose(curve.precision, p[:-1][::-1])
    np.testing.assert_allclose(curve.recall, r[:-1][::-1])
    assert operating_points(scores, np.zeros(200)) is None


def test_report_of_ssgrl_and_of_a_model_without_attention(ablation: Path, tmp_path: Path) -> None:
    page = write_report(ablation / "ssgrl", tmp_path / "ssgrl.html").read_text()
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in page
    assert "<script" not in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    attention = page[page.index('<section id="attention">') :]
    tested = json.loads((ablation / "ssgrl" / "test" / "metrics.json").read_text())
    defined = [c for c, v in tested["metrics"]["per_class_AP"].items() if v is not None]
    for name in defined:  # every class with a positive test image has its examples
        assert f'id="attention-{name}"' in attention
    assert "best-scored image with" in attention and "worst-scored image with" in attention
    assert "The GGNN runs" in page or "T = 3" in page
    baseline = write_report(ablation / "baseline" / "test", tmp_path / "base.html").read_text()
    assert "has no attention maps: it is a baseline" in baseline
    assert "This model has no label graph" in baseline


def test_report_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_report_in_headless_chromium(ablation: Path, tmp_path: Path) -> None:
    import os

    missing = browser_missing()
    if missing:
        message = f"no browser to test the report with: missing {', '.join(missing)}"
        if os.environ.get("SSGRL_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (SSGRL_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    from selenium.webdriver.common.by import By

    path = tmp_path / "report.html"
    assert main(["report", str(ablation / "ssgrl"), "--out", str(path)]) == 0
    driver = start_browser(window=(1300, 1000))
    try:
        driver.get(path.as_uri())
        for section in SECTION_IDS:
            element = driver.find_element(By.ID, section)
            assert element.find_element(By.TAG_NAME, "h2").text
        images: list[dict[str, Any]] = driver.execute_script(
            "return Array.from(document.images).map(i => "
            "({src: i.src.slice(0, 22), w: i.naturalWidth, ok: i.complete}))"
        )
        assert len(images) >= 6
        assert all(i["ok"] and i["w"] > 0 for i in images), images
        assert all(i["src"] == "data:image/png;base64," for i in images)
        # every resource the page loaded: itself only (no external requests)
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert [r for r in resources if not r.startswith("data:")] == []
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("SSGRL_SAVE_SCREENSHOTS"):  # README figures: docs/report.png
            shutil.copy(shot, Path(os.environ["SSGRL_SAVE_SCREENSHOTS"]) / "report.png")
    finally:
        driver.quit()
