"""Take the README's screenshots of `ssgrl report` and `ssgrl ablate` (run by hand; not a test):

    OMP_NUM_THREADS=2 .venv/bin/python docs/report_screenshot.py \
        --report demo_out/latest/report.html --compare demo_out/latest/compare.html

``--report`` is any page of ``ssgrl report`` (the demo writes one for its SSGRL run) and
``--compare`` any page of ``ssgrl compare --html`` or ``ssgrl ablate`` (``ablation.html``). Opens
them in headless Debian Chromium (Selenium + /usr/bin/chromedriver) and saves docs/report.png (the
per-class AP and precision-recall sections) and docs/compare.png (the top of the comparison).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

DOCS = Path(__file__).resolve().parent


def browser(width: int, height: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(
        service=Service(executable_path="/usr/bin/chromedriver"), options=options
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", required=True, help="an `ssgrl report` HTML file")
    parser.add_argument("--compare", required=True, help="an `ssgrl compare --html` file")
    args = parser.parse_args()
    driver = browser(1300, 1150)
    try:
        driver.get(Path(args.report).resolve().as_uri())
        driver.execute_script("document.getElementById('per-class-ap').scrollIntoView()")
        driver.save_screenshot(str(DOCS / "report.png"))
        driver.set_window_size(1300, 700)
        driver.get(Path(args.compare).resolve().as_uri())
        driver.save_screenshot(str(DOCS / "compare.png"))
    finally:
        driver.quit()
    print(f"written: {DOCS / 'report.png'}, {DOCS / 'compare.png'}")


if __name__ == "__main__":
    main()
