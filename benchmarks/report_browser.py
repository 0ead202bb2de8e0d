"""Check: a report.html opens in headless Chromium with every image drawn and no console error.

Needs Chromium, ChromeDriver and selenium, which stainfree itself does not (on Debian:
``apt-get install chromium chromium-driver``; ``pip install selenium`` in any environment).
Prints JSON: images, images not drawn, console messages at level SEVERE, external requests.

    python benchmarks/report_browser.py runs/jurkat/5class_bf_df/report.html
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def check(path: Path) -> dict:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options)
    try:
        driver.get(path.resolve().as_uri())
        images = driver.execute_script("return document.images.length")
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt)"
        )
        console = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        requests = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                url = message["params"]["request"]["url"]
                if not url.startswith(("file:", "data:")):
                    requests.append(url)
        sections = driver.execute_script("return document.querySelectorAll('section').length")
    finally:
        driver.quit()
    return {
        "report": str(path),
        "bytes": path.stat().st_size,
        "sections": sections,
        "images": images,
        "images_not_drawn": broken,
        "console_errors": console,
        "external_requests": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = [check(p) for p in args.reports]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
