"""The twin viewer (``/viewer``) in a real headless Chromium, on the live server and the small
model trained through the API: sign in, find a patient with a cohort predicate, show the
timeline and the forecast, compare two plans, and check that the values the page shows are the
API's. Wrong key, unknown patient and a plan the model cannot simulate give a clear message and
nothing but those failed requests in the browser console. Screenshots go to
``test-artifacts/viewer/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from api.security import KeyStore
from tests.api.browser import chromium, screenshot
from tests.api.conftest import Cohort, LiveServer
from tests.api.test_patient_images import upload_image

WAIT_S = 120  # generous: the machine is shared; nothing here asserts on time


@pytest.fixture(scope="module")
def viewer_key(live: LiveServer) -> str:
    """A key with exactly what the viewer needs: read patients and run the twin."""
    keys = KeyStore(live.settings.keys_db)
    try:
        return keys.create("viewer-test", ["graph:read", "sim:run"]).token
    finally:
        keys.close()


@pytest.fixture(scope="module")
def model(live: LiveServer, trained_model: dict) -> dict[str, Any]:
    assert trained_model["status"] == "succeeded", trained_model
    with live.client("sim") as c:
        return next(m for m in c.get("/v1/models").json()["models"] if m["name"] == "tiny")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def _by(css: str) -> tuple[str, str]:
    return ("css selector", css)


def _wait(driver: Any, what: Any, message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(what, message)


def _message(driver: Any) -> str:
    """The page's alert once it shows (waits for it)."""
    box = driver.find_element("id", "message")
    _wait(driver, lambda d: box.is_displayed() and box.text.strip(), "the page showed no message")
    return box.text


def _console(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def _assert_only_failed_requests(entries: list[dict[str, Any]], expected: list[tuple[str, int]]) -> None:
    """The console holds no script error or warning at all, and exactly the ``(path, status)``
    network failures the test provoked (Chromium logs every non-2xx fetch there by itself)."""
    scripts = [e for e in entries if e.get("source") != "network"]
    assert not scripts, scripts
    seen = []
    for e in entries:
        m = re.match(r"^https?://[^/]+(/\S*) - Failed to load resource: the server responded with a status of (\d+)",
                     e["message"])
        assert m, e
        seen.append((m.group(1), int(m.group(2))))
    assert sorted(seen) == sorted(expected), seen


def _select(element: Any, value: str) -> None:
    from selenium.webdriver.support.select import Select

    Select(element).select_by_value(value)


def _num(text: str) -> float:
    return float(text.replace("−", "-"))


def _close(shown: str, value: float) -> None:
    """A number as the page shows it (3 decimals) is the API's value rounded."""
    assert abs(_num(shown) - value) <= 0.0005 + 1e-9, (shown, value)


def _target(model: dict[str, Any], word: str) -> dict[str, Any]:
    return next(t for t in model["spec"]["targets"] if word in t["name"])


@pytest.mark.slow
def test_viewer_end_to_end(live: LiveServer, cohort: Cohort, model: dict[str, Any], viewer_key: str,
                           browser: Any) -> None:
    d = browser
    d.get(f"{live.url}/viewer")
    assert d.current_url.endswith("/viewer/") and d.title == "patient-twin viewer"
    screenshot(d, "viewer-signin")

    # --- a wrong key: a clear message, the app stays closed
    d.find_element("id", "api-key").send_keys("twk_0000_wrong")
    d.find_element("id", "signin").click()
    msg = _message(d)
    assert "Sign-in failed" in msg and "API key is not valid" in msg, msg
    assert not d.find_element("id", "app").is_displayed()
    _assert_only_failed_requests(_console(d), [("/v1/models", 401)])
    screenshot(d, "viewer-wrong-key")

    # --- sign in; the key is in no browser storage and in no URL
    field = d.find_element("id", "api-key")
    field.clear()
    field.send_keys(viewer_key)
    d.find_element("id", "signin").click()
    _wait(d, lambda d: d.find_element("id", "app").is_displayed(), "sign-in did not open the app")
    assert not d.find_element("id", "message").is_displayed()
    storage = d.execute_script("return [localStorage.length, sessionStorage.length, document.cookie]")
    assert storage == [0, 0, ""], storage
    assert viewer_key not in d.current_url and viewer_key not in d.page_source

    # --- find patients: on the model's treatment and HbA1c above a threshold (both in the API's answer)
    treatment = model["spec"]["treatments"][0]
    hba1c = _target(model, "A1c")
    predicate = {"all": [{"on_medication": treatment["code"]}, {"lab": hba1c["code"], "op": ">", "value": 5.0}]}
    with live.client("reader") as c:
        expected = c.post("/v1/query", json={"predicate": predicate}).json()["patient_ids"]
    assert expected, "the synthetic cohort has treated patients with an HbA1c above 5 %"
    terms = d.find_elements(*_by("#terms .term"))
    _select(terms[0].find_element(*_by(".term-kind")), "medication")
    terms[0].find_element(*_by(".term-code")).send_keys(treatment["code"])
    d.find_element("id", "add-term").click()
    second = d.find_elements(*_by("#terms .term"))[1]
    _select(second.find_element(*_by(".term-kind")), "lab")
    second.find_element(*_by(".term-code")).send_keys(hba1c["code"])
    _select(second.find_element(*_by(".term-op")), ">")
    second.find_element(*_by(".term-value")).send_keys("5")
    d.find_element("id", "find").click()
    _wait(d, lambda d: d.find_elements(*_by("button.pick")), "the cohort query listed no patient")
    picks = d.find_elements(*_by("button.pick"))
    assert [p.get_attribute("data-patient") for p in picks] == expected
    screenshot(d, "viewer-cohort", d.find_element("id", "cohort-view"))

    # --- the patient's timeline: every record the API returns is drawn
    pid = expected[0]
    picks[0].click()
    _wait(d, lambda d: d.find_elements(*_by("#timeline .multiple canvas")), "the timeline drew no lab chart")
    with live.client("reader") as c:
        nodes = c.get(f"/v1/patients/{pid}/timeline").json()["nodes"]
    assert d.find_element("id", "patient-title").text == pid
    lab_codes = {n["code"] for n in nodes if n["type"] == "Lab" and n["value"] is not None}
    assert {e.get_attribute("data-lab") for e in d.find_elements(*_by("#timeline .multiple"))} == lab_codes
    for kind, css in (("Medication", ".bar.medication"), ("Procedure", ".bar.procedure, #timeline .mark.procedure"),
                      ("Condition", ".bar.condition, #timeline .mark.condition"),
                      ("Encounter", ".bar.encounter, #timeline .mark.encounter"), ("Image", ".thumb")):
        drawn = sorted(e.get_attribute("data-node") for e in d.find_elements(*_by(f"#timeline {css}")))
        assert drawn == sorted(n["id"] for n in nodes if n["type"] == kind and n["time"]), kind
    assert len(d.find_elements(*_by("#timeline ul.variants li"))) == sum(n["type"] == "Variant" for n in nodes)
    meds = [n for n in nodes if n["type"] == "Medication"]
    assert meds and all(m["display"] in d.find_element("id", "timeline").text for m in meds)
    screenshot(d, "viewer-timeline", d.find_element("id", "patient-view"))

    # --- the as-of cursor: the timeline as the API knew it then, later records hidden
    d.execute_script("const s = document.getElementById('asof'); s.value = 500; s.dispatchEvent(new Event('change'))")
    label = d.find_element("id", "asof-label")
    _wait(d, lambda d: label.get_attribute("data-as-of"), "moving the cursor set no as-of time")
    as_of = label.get_attribute("data-as-of")
    with live.client("reader") as c:
        then = c.get(f"/v1/patients/{pid}/timeline", params={"as_of": as_of}).json()["nodes"]
    assert 0 < len(then) < len(nodes)
    then_labs = {n["code"] for n in then if n["type"] == "Lab" and n["value"] is not None}
    _wait(d, lambda d: {e.get_attribute("data-lab") for e in d.find_elements(*_by("#timeline .multiple"))} == then_labs,
          "the timeline did not follow the cursor")
    drawn = {e.get_attribute("data-node") for e in d.find_elements(*_by("#timeline [data-node]"))}
    assert drawn == {n["id"] for n in then if n["type"] in ("Medication", "Procedure", "Condition", "Encounter", "Image")}
    d.execute_script("const s = document.getElementById('asof'); s.value = s.max; s.dispatchEvent(new Event('change'))")
    _wait(d, lambda d: not label.get_attribute("data-as-of"), "the cursor did not return to the latest record")

    # --- the forecast: the table shows the API's numbers; the drivers are named records
    assert d.find_element("id", "fc-explain").get_attribute("value") == model["spec"]["targets"][0]["code"]
    d.find_element("id", "fc-horizon").clear()
    d.find_element("id", "fc-horizon").send_keys("180")
    d.find_element("id", "run-forecast").click()
    _wait(d, lambda d: d.find_elements(*_by("#forecast-table tbody tr")), "no forecast was shown")
    body = {"model": "tiny", "horizon_days": 180, "n_samples": 16, "step_days": 7, "explain": True}
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/forecast", json=body)
    assert r.status_code == 200, r.text
    fc = r.json()
    rows = d.find_elements(*_by("#forecast-table tbody tr"))
    assert [row.get_attribute("data-lab") for row in rows] == list(fc["labs"])
    for row in rows:
        lab = fc["labs"][row.get_attribute("data-lab")]
        assert float(row.find_element(*_by("td.day")).text) == lab["days"][-1] == 180
        _close(row.find_element(*_by("td.median")).text, lab["median"][-1])
        _close(row.find_element(*_by("td.p05")).text, lab["p05"][-1])
        _close(row.find_element(*_by("td.p95")).text, lab["p95"][-1])
    assert len(d.find_elements(*_by("#forecast .multiple canvas"))) == len(fc["labs"])
    drivers = d.find_elements(*_by("#drivers tbody tr"))
    assert fc["drivers"] and [e.get_attribute("data-node") for e in drivers] == [x["node_id"] for x in fc["drivers"]]
    for row, x in zip(drivers, fc["drivers"], strict=True):
        _close(row.find_element(*_by("td.score")).text, x["score"])
        if x["display"]:
            assert x["display"] in row.text
    screenshot(d, "viewer-forecast", d.find_element("id", "forecast-view"))

    # --- two plans side by side, ranked: the page's numbers are the API's
    plan_cards = d.find_elements(*_by("#plans fieldset.plan"))
    assert len(plan_cards) == 2
    action = plan_cards[1].find_element(*_by(".action"))
    assert action.find_element(*_by(".treatment")).get_attribute("value") == treatment["name"]
    action.find_element(*_by(".dose")).send_keys("1000")
    _select(action.find_element(*_by(".frequency")), "bid")
    d.find_element("id", "objective").send_keys("minimise HbA1c at 180d")
    d.find_element("id", "run-scenarios").click()
    _wait(d, lambda d: d.find_elements(*_by("#comparison")), "no plan comparison was shown")
    plans = [{"name": "no treatment", "baseline": "none", "actions": []},
             {"name": treatment["name"], "baseline": "none",
              "actions": [{"treatment": treatment["name"], "dose": 1000, "start": 0, "frequency": "bid"}]}]
    body = {"model": "tiny", "plans": plans, "horizon_days": 180, "n_samples": 16, "objective": "minimise HbA1c at 180d"}
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/scenarios", json=body)
    assert r.status_code == 200, r.text
    sc = r.json()
    ranked = d.find_elements(*_by("#ranking tbody tr"))
    assert [e.get_attribute("data-plan") for e in ranked] == [p["plan"] for p in sc["ranking"]["plans"]]
    for row, p in zip(ranked, sc["ranking"]["plans"], strict=True):
        tie = "=" if p["tied_with_top"] and p["rank"] > 1 else ""  # a plan tied with the top: "=2"
        assert row.find_element(*_by("td.rank")).text == tie + str(p["rank"])
        for cls in ("median", "lo", "hi"):
            _close(row.find_element(*_by(f"td.{cls}")).text, p[cls])
    table = d.find_element("id", "comparison")
    assert table.get_attribute("data-lab") == hba1c["code"]  # the objective's lab is shown first
    for result in sc["results"]:
        for day, v in result["labs"][hba1c["code"]]["at_day"].items():
            cell = table.find_element(*_by(f"tr[data-day='{day}'] td[data-plan='{result['plan']}']"))
            for cls in ("median", "lo", "hi"):
                _close(cell.find_element(*_by(f"span.{cls}")).text, v[cls])
            if result["reference"]:
                assert not cell.find_elements(*_by(".diff"))
            else:
                for cls in ("median", "lo", "hi"):
                    _close(cell.find_element(*_by(f"span.diff-{cls}")).text, v["diff_vs_reference"][cls])
    assert not d.find_elements("id", "guardrails") and not sc["flags"]
    screenshot(d, "viewer-compare", d.find_element("id", "scenario-view"))

    # --- a dose far outside the training range: the guardrail's warning is shown with the plan
    dose = action.find_element(*_by(".dose"))
    dose.clear()
    dose.send_keys("1000000")
    d.find_element("id", "run-scenarios").click()
    _wait(d, lambda d: d.find_elements("id", "guardrails"), "no guardrail warning was shown")
    plans[1]["actions"][0]["dose"] = 1_000_000
    with live.client("sim") as c:
        flags = c.post(f"/v1/twins/{pid}/scenarios", json=body).json()["flags"]
    assert flags and all(f["plan"] == treatment["name"] for f in flags)
    shown = d.find_element("id", "guardrails").text
    assert all(f["message"] in shown for f in flags), (shown, flags)
    screenshot(d, "viewer-guardrail", d.find_element("id", "scenario-view"))

    # --- a plan the model cannot simulate (a dose in grays for a drug in mg): the plan error, named
    dose.clear()
    dose.send_keys("2")
    unit = action.find_element(*_by(".unit"))
    unit.send_keys("Gy")
    d.find_element("id", "run-scenarios").click()
    msg = _message(d)
    plans[1]["actions"][0].update(dose=2, unit="Gy")
    with live.client("sim") as c:
        r = c.post(f"/v1/twins/{pid}/scenarios", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()["plan"]
    assert "cannot simulate" in msg and f"plan '{problem['plan']}'" in msg and problem["field"] in msg, msg
    assert problem["reason"] in msg, (msg, problem)
    assert not d.find_elements("id", "comparison")  # no stale result beside the error
    screenshot(d, "viewer-plan-error", d.find_element("id", "scenario-view"), viewport=True)

    # --- a patient whose image was uploaded: its preview is shown in the timeline
    scan = np.load(sorted((cohort.root / "images").glob("*.npy"))[0])  # a synthetic renal ultrasound
    assert scan.ndim == 2 and max(scan.shape) <= 128
    imaged, image_id = upload_image(live, scan)
    d.find_element("id", "open-id").send_keys(imaged)
    d.find_element("id", "open").click()
    _wait(d, lambda d: d.find_element("id", "patient-title").text == imaged, "the uploaded patient did not open")
    thumb = _wait(d, lambda d: d.find_elements(*_by(f".thumb[data-node='{image_id}'] img.thumb-img")),
                  "the image preview was not shown")[0]
    _wait(d, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb),
          "the preview did not load")
    assert d.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", thumb) == \
        [scan.shape[1], scan.shape[0]]
    screenshot(d, "viewer-image", d.find_element("id", "patient-view"))

    # --- an unknown patient
    d.find_element("id", "open-id").clear()
    d.find_element("id", "open-id").send_keys("no-such-patient")
    d.find_element("id", "open").click()
    _wait(d, lambda d: "no-such-patient" in d.find_element("id", "message").text, "no message for the unknown patient")
    msg = _message(d)
    assert "no patient with id 'no-such-patient'" in msg, msg
    assert d.find_element("id", "patient-title").text == imaged  # the open patient stays
    screenshot(d, "viewer-unknown-patient", d.find_element("id", "cohort-view"), viewport=True)

    _assert_only_failed_requests(_console(d), [(f"/v1/twins/{pid}/scenarios", 422),
                                               ("/v1/patients/no-such-patient", 404)])


def test_viewer_files_are_served_from_the_package_with_a_strict_policy(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as c:
        r = c.get("/viewer/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "default-src 'none'" in csp
        assert r.headers["referrer-policy"] == "no-referrer"
        for asset in re.findall(r'(?:src|href)="([^":]+)"', r.text):  # every file the page loads is served
            a = c.get(f"/viewer/{asset}")
            assert a.status_code == 200 and a.content, asset
        assert c.get("/viewer", follow_redirects=False).headers["location"] == "/viewer/"
        for bad in ("../main.py", "..%2fmain.py", "%2e%2e/routes/viewer.py", "VENDORED.md", "nothing.js"):
            r = c.get(f"/viewer/{bad}")
            assert r.status_code == 404, bad
            assert "def " not in r.text
        assert "/viewer" not in c.get("/openapi.json").text  # not part of the API's contract


def test_every_viewer_file_is_package_data() -> None:
    """``pyproject.toml``'s package-data patterns cover every file of the page, so an installed
    package serves the same viewer as the source tree."""
    import tomllib

    from api.routes.viewer import STATIC_DIR

    api_dir = STATIC_DIR.parents[1]
    patterns = tomllib.loads((api_dir.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["api"]
    shipped = {p for pattern in patterns for p in api_dir.glob(pattern)}
    files = {p for p in STATIC_DIR.rglob("*") if p.is_file()}
    assert files and files <= shipped, sorted(str(p) for p in files - shipped)
