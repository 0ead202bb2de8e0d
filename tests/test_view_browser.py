"""`stainfree view` in headless Chromium (issue 15): the page loads its data from its own server only,
with no console error; the first page of cells is drawn; hovering a point shows the cell; a box
selection, a gallery and a confusion-matrix count each fill the grid with their cells.

Skipped, with the reason, where selenium, Chromium or ChromeDriver is missing.
"""

from __future__ import annotations

import pytest

from stainfree.view.server import ViewServer
from stainfree.view.source import CellsSource
from test_report_browser import chrome, external_requests, hover_then_box_select, make_run, wait_for

DRAWN = "document.querySelectorAll('#sf-grid canvas[data-drawn=yes]').length"


@pytest.fixture(scope="module")
def driver():
    browser = chrome()
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("view"), n_per_class=60)
    srv = ViewServer(CellsSource.open(run), port=0)
    srv.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_viewer_in_chromium(driver, server):
    driver.get(server.url)
    assert wait_for(driver, f"return {DRAWN} === 96")  # the first page: 96 of the 120 cells
    assert "page 1 of 2 (120 cells)" in driver.find_element("id", "sf-page").text
    wait_for(driver, "return window.sfView.readyAt")  # the scatter got its points
    assert driver.execute_script("return window.sfView.source().data.x.length") == 120
    # hover: the cell's thumbnail and row, fetched from the server; a box around it fills the grid
    row, selected = hover_then_box_select(driver)
    assert "cell_id" in row
    assert wait_for(driver, f"return document.getElementById('sf-grid-title').textContent.startsWith('Selection: {len(selected)} cell')")
    assert wait_for(driver, f"return {DRAWN} === {min(len(selected), 96)}")
    assert "label" in driver.find_element("id", "sf-composition").text
    # the next page of all cells, then a gallery, then a confusion-matrix count
    driver.find_element("id", "sf-all").click()
    driver.find_element("id", "sf-next").click()
    assert wait_for(driver, f"return {DRAWN} === 24")
    driver.find_element("css selector", "button.sf-group").click()
    assert wait_for(driver, f"return {DRAWN} === 12")  # 12 cells per class
    count = driver.find_element("css selector", "td.sf-open")
    n = int(count.text)
    count.click()
    assert wait_for(driver, f"return document.getElementById('sf-grid-title').textContent.startsWith('True ') && {DRAWN} === {min(n, 96)}")
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []
    assert [u for u in external_requests(driver) if not u.startswith(server.url)] == []
