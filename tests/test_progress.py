import io
import logging
import sys
import time

from stainfree.progress import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _logger(level=logging.INFO):
    log = logging.getLogger("stainfree.tests.progress")
    log.setLevel(level)
    return log


def test_a_terminal_gets_a_bar_with_count_rate_and_time_left(monkeypatch):
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    seen = []
    for i in progress(range(30), desc="features", unit="cells", log=_logger()):
        time.sleep(0.01)  # the bar redraws at most every 0.1 s
        seen.append(i)
    assert seen == list(range(30))
    shown = err.getvalue()
    assert "features:" in shown and "/30 [" in shown
    assert "cells/s" in shown and "<" in shown  # rate and time left


def test_elsewhere_progress_is_log_lines_and_no_bar(monkeypatch, caplog):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with caplog.at_level(logging.INFO, logger="stainfree.tests.progress"):
        assert list(progress(range(3), desc="fields", unit="fields", log=_logger(), every_s=0)) == [0, 1, 2]
    assert err.getvalue() == ""
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(" (")[0] for m in messages[:3]] == ["fields: 1/3 fields", "fields: 2/3 fields", "fields: 3/3 fields"]
    assert messages[3].startswith("fields: 3 fields in ")


def test_no_bar_when_the_log_level_hides_progress(monkeypatch):
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress(range(5), desc="quiet", log=_logger(logging.WARNING))) == list(range(5))
    assert err.getvalue() == ""


def test_a_step_inside_a_larger_job_logs_no_closing_line(caplog):
    with caplog.at_level(logging.INFO, logger="stainfree.tests.progress"):
        list(progress(range(4), desc="predicting", log=_logger(), bar=False, summary=False))
    assert caplog.records == []
