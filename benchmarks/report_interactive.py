"""Check: a report of many cells (default 100,000) with interactive views stays small and quick.

Builds a run folder by hand (no training): a CellSet of synthetic 32 px cells, predictions of two
classes, an embedding with a UMAP and ten clusters; writes its report.html and opens it in
headless Chromium. Prints JSON: seconds to write the report, its size, seconds until the page
is loaded and the scatter ready (bokeh has built it, coloured), and seconds from a mouse move
onto a point until the hover panel shows its thumbnail (the webdriver's own delays included).
Needs Chromium, ChromeDriver and selenium (as ``tests/test_report_browser.py``).

    python benchmarks/report_interactive.py --cells 100000 --out benchmarks/results/report-interactive-2026-12-01.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_big_run(root: Path, n: int, seed: int = 0) -> Path:
    """A run folder of ``n`` cells: 2,000 synthetic cells, each repeated turned and noisier."""
    import anndata

    from stainfree.core.cellset import CellSet
    from stainfree.datasets.synthetic import make_cells

    rng = np.random.default_rng(seed)
    base = make_cells(1000, size=32, flasks_per_line=4, random_state=seed)
    pick = np.arange(n) % len(base)
    images = base.read(slice(None))[pick]
    images[len(base) :] = np.clip(images[len(base) :].astype(np.int16) + rng.integers(-8, 9, images[len(base) :].shape), 0, 255)
    table = base.table.iloc[pick].reset_index(drop=True)
    table["cell_id"] = [f"c{i:06d}" for i in range(n)]
    CellSet(images, table, channels=["bf"], groups=["flask"]).save(root / "big.cells")
    labels = table["label"].astype(str).to_numpy()
    classes = sorted(set(labels))
    p = np.clip(np.where(labels == classes[0], 0.75, 0.25) + rng.normal(0, 0.2, n), 0.01, 0.99)
    predictions = pd.DataFrame({"cell_id": table["cell_id"], "split": "fold0", "label": labels, "flask": table["flask"]})
    predictions["predicted"] = np.where(p >= 0.5, classes[0], classes[1])
    predictions[f"prob_{classes[0]}"], predictions[f"prob_{classes[1]}"] = p, 1 - p
    run = root / "run"
    run.mkdir()
    predictions.to_parquet(run / "predictions.parquet")
    (run / "metrics.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({"command": "evaluate", "data": {"cells": str(root / "big.cells")}}))
    centres = rng.normal(0, 6, (10, 8))
    cluster = rng.integers(0, 10, n)
    x = centres[cluster] + rng.normal(size=(n, 8))
    obs = table[["label", "flask", "area"]].copy()
    obs.index = pd.Index(table["cell_id"].astype(str))
    obs["cluster"] = pd.Categorical(cluster.astype(str))
    adata = anndata.AnnData(obs=obs, obsm={"X_pca": x, "X_umap": x[:, :2]})
    adata.uns["stainfree_cluster"] = {"key": "X_pca"}
    adata.write_h5ad(run / "clusters.h5ad")
    return run


def measure(n: int) -> dict:
    from selenium.webdriver.common.action_chains import ActionChains

    from stainfree.report.sections import write_report
    from test_report_browser import HELPERS, chrome, external_requests, wait_for

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = make_big_run(Path(tmp), n)
        t1 = time.perf_counter()
        report = write_report(run)
        t2 = time.perf_counter()
        driver = chrome()
        try:
            t2 = time.perf_counter()  # the browser started
            driver.get(report.as_uri())
            wait_for(
                driver, "return window.sfView && window.sfView.source() && document.getElementById('sf-legend').innerHTML.length > 0", 60
            )
            t3 = time.perf_counter()
            driver.execute_script(HELPERS)
            driver.execute_script("document.getElementById('sf-colour').scrollIntoView()")
            xy = wait_for(driver, "return window.sfTest.pointOnScreen(0)")
            ActionChains(driver).move_by_offset(1, 1).perform()
            t4 = time.perf_counter()
            ActionChains(driver).move_by_offset(int(xy[0]) - 1, int(xy[1]) - 1).perform()
            wait_for(driver, "return document.getElementById('sf-hover-thumb').dataset.drawn === 'yes'", 30)
            t5 = time.perf_counter()
            shown = driver.execute_script("return [window.sfView.data.cells, window.sfView.data.shown, window.sfView.data.points.length]")
            timing = driver.execute_script(
                "const t = performance.getEntriesByType('navigation')[0];"
                "return [t.domContentLoadedEventEnd, t.loadEventEnd, window.sfView.readyAt]"
            )
            errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            requests = external_requests(driver)
        finally:
            driver.quit()
        return {
            "cells": n,
            "cells_in_views": shown[1],
            "points_in_scatter": shown[2],
            "make_run_s": round(t1 - t0, 1),
            "write_report_s": round(t2 - t1, 1),
            "report_mb": round(report.stat().st_size / 1e6, 2),
            "open_until_scatter_ready_s": round(t3 - t2, 2),
            "page_dom_content_loaded_s": round(timing[0] / 1000, 2),
            "page_load_event_s": round(timing[1] / 1000, 2),
            "page_scatter_ready_s": round(timing[2] / 1000, 2),
            "hover_to_thumbnail_s": round(t5 - t4, 3),
            "console_errors": errors,
            "external_requests": requests,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    text = json.dumps(measure(args.cells), indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
