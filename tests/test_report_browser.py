"""report.html's interactive views in headless Chromium (issue 15): no console error, no request
leaving the file, a thumbnail on hover, a gallery for a selection and for a confusion-matrix cell.

Skipped, with the reason, where selenium, Chromium or ChromeDriver is missing (`.ci/run` installs
them on Debian).
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from stainfree.datasets.synthetic import make_cells
from stainfree.report.sections import write_report


def make_run(root, n_per_class: int = 40, *, sixteen_bit_pair: bool = False, seed: int = 0):
    """A small evaluation run folder made by hand (no training): predictions, an embedding with a
    UMAP and clusters, and the CellSet it refers to (8-bit brightfield, or with
    ``sixteen_bit_pair`` 16-bit brightfield and a dim 16-bit second channel)."""
    import anndata

    from stainfree.core.cellset import CellSet

    rng = np.random.default_rng(seed)
    cells = make_cells(n_per_class, size=32, flasks_per_line=2, random_state=seed)
    if sixteen_bit_pair:
        bright = cells.read(slice(None)).astype(np.uint16) * 257
        cells = CellSet(np.concatenate([bright, bright // 64], axis=1), cells.table, channels=["bf", "dim"], groups=cells.groups)
    cells.save(root / "c.cells")
    labels = cells.labels.astype(str)
    classes = sorted(set(labels))
    p_first = np.clip(np.where(labels == classes[0], 0.8, 0.2) + rng.normal(0, 0.25, len(cells)), 0.01, 0.99)
    predictions = pd.DataFrame({"cell_id": cells.cell_ids, "split": "fold0", "label": labels, "flask": cells.table["flask"]})
    predictions["predicted"] = np.where(p_first >= 0.5, classes[0], classes[1])
    predictions[f"prob_{classes[0]}"], predictions[f"prob_{classes[1]}"] = p_first, 1 - p_first
    run = root / "run"
    run.mkdir()
    predictions.to_parquet(run / "predictions.parquet")
    (run / "metrics.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({"command": "evaluate", "data": {"cells": str(root / "c.cells")}}))
    x = rng.normal(size=(len(cells), 4)) + (labels == classes[0])[:, None] * 3
    obs = cells.table[["label", "flask", "area"]].copy()
    obs.index = pd.Index(cells.cell_ids.astype(str))
    obs["cluster"] = pd.Categorical(np.where(x[:, 0] > 1.5, "1", "0"))
    adata = anndata.AnnData(obs=obs, obsm={"X_pca": x, "X_umap": x[:, :2]})
    adata.uns["stainfree_cluster"] = {"key": "X_pca"}
    adata.write_h5ad(run / "clusters.h5ad")
    return run


def chrome():
    """A headless Chromium driver with console and network logs; skip with the reason when absent."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    if not (shutil.which("chromium") or shutil.which("google-chrome") or shutil.which("chrome")):
        pytest.skip("no Chromium on this machine (apt-get install chromium chromium-driver)")
    if not shutil.which("chromedriver"):
        pytest.skip("no chromedriver on this machine (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1000", "--enable-unsafe-swiftshader"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def external_requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("file:", "data:", "blob:")):
                urls.append(url)
    return urls


def wait_for(driver, script: str, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def hover_a_point(driver) -> None:
    """Move the mouse over the first drawn point (its position from bokeh's own scales)."""
    from selenium.webdriver.common.action_chains import ActionChains

    xy = wait_for(driver, "return window.sfTest && window.sfTest.pointOnScreen(0)")
    ActionChains(driver).move_by_offset(1, 1).perform()  # the pointer starts at (0, 0) of the viewport
    ActionChains(driver).move_by_offset(int(xy[0]) - 1, int(xy[1]) - 1).pause(0.2).perform()


def hover_then_box_select(driver) -> tuple[str, list[int]]:
    """Hover the first point (its thumbnail must be drawn), then drag a box around it (box select is
    the active drag): the hover panel's row text and the selected rows."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script(HELPERS)
    driver.execute_script("window.scrollTo(0, document.getElementById('sf-colour').getBoundingClientRect().top + window.scrollY - 10)")
    hover_a_point(driver)
    assert wait_for(driver, "return document.getElementById('sf-hover-thumb').dataset.drawn") == "yes"
    row = driver.find_element("id", "sf-hover-row").text
    ActionChains(driver).move_by_offset(-40, -40).click_and_hold().move_by_offset(40, 40).move_by_offset(40, 40).release().perform()
    selected = wait_for(driver, "return window.sfView.source().selected.indices")
    assert 0 in selected
    return row, selected


@pytest.fixture(scope="module")
def driver():
    browser = chrome()  # skips before any report is built when there is no browser
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("browser"))
    return write_report(run)


def test_interactive_views_in_chromium(driver, report):
    driver.get(report.as_uri())
    wait_for(driver, "return window.sfView && window.sfView.source() && document.getElementById('sf-legend').innerHTML.length > 0")
    # galleries drawn from the sprite sheets
    assert wait_for(driver, "return document.querySelectorAll('.sf-strip canvas[data-drawn=yes]').length") > 10
    # hover: the panel shows the cell's thumbnail and row; a box around the point fills the gallery
    row, selected = hover_then_box_select(driver)
    assert "cell" in row
    drawn = "return document.querySelectorAll('#sf-gallery canvas[data-drawn=yes]').length"
    assert wait_for(driver, f"return {drawn[7:]} === {len(selected)}")
    assert driver.find_element("id", "sf-gallery-title").text.startswith(f"Selection: {len(selected)} cell")
    # and so does a selection set through bokeh's model, as a lasso would set it
    driver.execute_script("window.sfView.source().selected.indices = [0, 1, 2, 3, 4]")
    assert wait_for(driver, f"return {drawn[7:]} === 5")
    assert "Selection: 5 cells" in driver.find_element("id", "sf-gallery-title").text
    assert "label" in driver.find_element("id", "sf-gallery").text  # the composition
    # a confusion-matrix count opens its cells
    cell = driver.find_element("css selector", "td.sf-open")
    n = int(cell.text)
    cell.click()
    assert wait_for(driver, f"return {drawn[7:]} === {min(n, 48)}")
    assert driver.find_element("id", "sf-gallery-title").text.startswith("True ")
    # colour by a number: a colour scale and its legend
    assert driver.execute_script("return window.sfView.colourBy('area')")
    assert driver.execute_script("return window.sfView.source().data.color[0]").startswith("#")
    assert "area" in driver.find_element("id", "sf-colour").text
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []
    assert external_requests(driver) == []


#: Where a scatter point is on screen, from bokeh's view of the figure (used to hover it).
HELPERS = """
window.sfTest = {
  pointOnScreen: function (k) {
    const views = [];
    for (const root of Bokeh.index.roots || Object.values(Bokeh.index)) {
      const stack = [root];
      while (stack.length) { const v = stack.pop(); views.push(v); if (v.child_views) stack.push(...v.child_views); }
    }
    const plot = views.find(v => v.frame && v.canvas_view);
    if (!plot) return null;
    const src = window.sfView.source();
    const sx = plot.frame.x_scale.compute(src.data.x[k]), sy = plot.frame.y_scale.compute(src.data.y[k]);
    const box = plot.canvas_view.el.getBoundingClientRect();
    return [box.left + sx, box.top + sy];
  }
};
"""
