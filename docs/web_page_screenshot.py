"""Take the README's screenshot of the web page (run by hand; not a test):

    OMP_NUM_THREADS=2 .venv/bin/python docs/web_page_screenshot.py \
        [--checkpoint demo_out/latest/ssgrl/checkpoints/best.ckpt] [--out docs/web_page.png]

The README's picture: the demo's checkpoint with per-class thresholds fitted on its validation
split (``ssgrl calibrate --checkpoint demo_out/latest/ssgrl/checkpoints/best.ckpt --config
demo_out/latest/ssgrl/config.yaml --out /tmp/demo_calibrated.ckpt``, then ``--checkpoint
/tmp/demo_calibrated.ckpt``), scene 3, the second label clicked.

Serves the checkpoint on 127.0.0.1 (a free port), opens the page in headless Debian Chromium
(Selenium + /usr/bin/chromedriver), uploads a synthetic test scene of the checkpoint's image size
(a test image the demo's models never trained on) through the file input, clicks a label and saves the window as PNG.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ssgrl.data.registry import load_split
from ssgrl.inference.predictor import Predictor
from ssgrl.inference.server import BackgroundServer, create_app

OVERLAY_OF = (
    "const o = document.getElementById('overlay');"
    "return (!o.hidden && o.complete && o.naturalWidth > 0) ? (o.dataset.label || null) : null;"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="demo_out/latest/ssgrl/checkpoints/best.ckpt")
    parser.add_argument("--out", default="docs/web_page.png")
    parser.add_argument("--scene", type=int, default=3, help="index of the synthetic test scene")
    parser.add_argument("--click", type=int, default=1, help="click the label at this rank")
    parser.add_argument("--size", default="1400,1000", help="window width,height in px")
    args = parser.parse_args()

    predictor = Predictor(args.checkpoint)
    size = predictor.preprocessing.image_size
    demo = {"num_train": 1600, "num_val": 400, "num_test": 600, "seed": 0}  # ssgrl demo's data
    split = load_split("synthetic", "test", image_size=size, **demo)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / f"scene_{args.scene:03d}.png"
        split.load_image(args.scene).save(image)

        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(arg)
        options.add_argument(f"--window-size={args.size}")
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            with BackgroundServer(create_app(predictor)) as server:
                driver.get(server.url + "/")
                wait = WebDriverWait(driver, 60)
                wait.until(lambda d: "classes" in d.find_element(By.ID, "model-info").text)
                driver.find_element(By.ID, "file").send_keys(str(image))
                rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".label-row"))
                label = rows[args.click].get_attribute("data-label")
                wait.until(lambda d: d.execute_script(OVERLAY_OF) is not None)
                rows[args.click].click()
                wait.until(lambda d: d.execute_script(OVERLAY_OF) == label)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(args.out)
        finally:
            driver.quit()
    print(f"wrote {args.out} (scene {args.scene}, overlay of {label!r})")


if __name__ == "__main__":
    main()
