"""The report as a reader sees it: each format's index.html opened from its folder in headless
Chromium (selenium, with Debian's /usr/bin/chromium and /usr/bin/chromedriver named explicitly:
selenium's own driver download cannot work offline). Every image must load, the console must stay
free of errors, and the table's numbers must equal `deqa evaluate --json` on the same inputs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deqa import cli

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
N_BOOT = "40"


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver "
                    "(.ci/run does where it runs as root)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1300,1800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["deqa", "iqa_eval", "scores"])
def test_report_in_a_real_browser(fmt, browser, report_inputs, tmp_path, capsys):
    preds, metas = str(report_inputs[fmt]), [str(m) for m in report_inputs["metas"]]
    out = tmp_path / "report"
    assert cli.main(["report", preds, *metas, "--out", str(out), "--n-boot", N_BOOT, "--no-progress",
                     "--workers", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "--json", "--n-boot", N_BOOT, preds, *metas]) == 0
    expected = json.loads(capsys.readouterr().out)
    browser.get_log("browser")  # start from an empty console
    browser.get((out / "index.html").as_uri())
    browser.execute_script("return document.readyState")
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
    assert len(images) >= (3 if fmt == "scores" else 8)
    for src, complete, width in images:
        assert complete and width > 0, f"{src} did not load"
    severe = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert severe == [], severe
    cells = browser.execute_script("""
        return Array.from(document.querySelectorAll('#table tr[data-dataset]')).map(tr =>
            [tr.dataset.dataset, Array.from(tr.querySelectorAll('td[data-col]')).map(td =>
                [td.dataset.col, td.dataset.value, td.firstChild.textContent])]);""")
    shown = {(name, col): (value, text) for name, row in cells for col, value, text in row}
    records = [*expected["datasets"], expected["pooled"]]
    assert {name for name, _ in shown} == {r["dataset"] for r in records}
    for record in records:
        for col, want in record.items():
            if (record["dataset"], col) not in shown:
                assert col not in ("n", "plcc_logistic", "srcc", "krcc", "plcc"), col
                continue
            value, text = shown[(record["dataset"], col)]
            if want is None:
                assert value == "" and text == "-"
            elif col == "n":
                assert int(value) == want and text == str(want)
            else:
                assert float(value) == want and text == f"{want:.4f}", (record["dataset"], col)
    assert all(src.startswith("figures/") for src, _, _ in images)  # nothing from the network
