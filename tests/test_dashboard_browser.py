"""The dashboard in a real headless Chromium against the real Kafka, consumer, Redis and API.

One seeded pipeline and one browser serve the whole module. Checked: sign-in and a wrong token's error; every
panel's drawn data (``data-chart``) and counters equal the API's answers and the event oracle; each panel's CSV
download; the empty-state text of a key prefix without data and of a day without users; the 503 text when Redis
is down; the "live" toggle; the page's weight as transferred; no console errors; and a screenshot at
``.ci/artifacts/dashboard.png``.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from selenium.webdriver.common.by import By

from api.errors import UNAVAILABLE
from tests.support.answers import expected_by_time_of_day, expected_hourly, expected_new_users, expected_weekly
from tests.support.environment import REPO_ROOT, in_ci
from tests.support.events import Sent, generate, iso
from tests.support.network import free_port, http_get
from tests.support.oracle import Activity, _ts_ms, activity
from tests.support.pipeline import ingest
from tests.support.processes import cli_token, consumer_env, start_api
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # a real browser over the whole pipeline

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = REPO_ROOT / ".ci" / "artifacts" / "dashboard.png"
ZONE = "UTC"
TZ = ZoneInfo(ZONE)
PANELS = ("active", "new", "tod", "busy", "retention", "sticky", "platforms")
PLATFORMS = ("web", "desktop", "ios", "android")
PAGE_BUDGET_BYTES = 300_000
USERS = "/api/v1/engagement-dashboard/users/"


@dataclass
class Pipeline:
    """The module's seeded pipeline: the consumer's settings, the API, and every event stored so far."""

    env: dict[str, str]
    base: str
    headers: dict[str, str]
    now: int
    sent: list[Sent]
    tmp: Path

    def found(self) -> Activity:
        """The oracle of everything stored (the default 400 days' retention keeps all of it)."""
        return activity((s.event for s in self.sent), TZ, self.now, 400)

    def api(self, path: str, headers: dict[str, str] | None = None) -> Any:
        """The API's JSON answer to ``path``, which must succeed."""
        status, body = http_get(self.base + path, headers or self.headers)
        assert status == 200, body
        return orjson.loads(body)


@pytest.fixture(scope="module")
def pipeline(stack, module_topic, module_redis_prefix, tmp_path_factory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("dashboard")
    now = int(time.time() * 1000)
    sent = with_platforms(generate(313, 4000, now, users=300, days=40, avoid_days_ago=(0, 0.01)))
    env = consumer_env(stack, module_topic(3), module_redis_prefix, f"g-{uuid.uuid4().hex[:8]}", ACTIVITY_TIMEZONE=ZONE)
    ingest(env, sent, tmp)
    headers = cli_token(env, "browser-admin")
    api, base = start_api(env, tmp / "api.log")
    try:
        yield Pipeline(env, base, headers, now, sent, tmp)
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0


def with_platforms(sent: list[Sent]) -> list[Sent]:
    """The events with a platform each: one per user, a second one on about half the events of every seventh
    user."""
    found = []
    for record in sent:
        event = record.event
        if event is None or record.value is None:
            found.append(record)
            continue
        number = int(event["userId"][-5:]) if event["userId"][-5:].isdigit() else 0
        second = number % 7 == 0 and zlib.crc32(record.value) % 2 == 1
        event = {**event, "properties": {"platform": PLATFORMS[(number + second) % len(PLATFORMS)]}}
        found.append(Sent(record.key, orjson.dumps(event), event))
    return found


def platform_days(pipeline: Pipeline) -> dict[tuple[date, str], set[str]]:
    """Who was active with which platform on which day, from the events sent."""
    found = pipeline.found()
    values: dict[tuple[date, str], set[str]] = {}
    for record in pipeline.sent:
        event = record.event
        if event is None or "properties" not in event or event["type"] not in ("login", "activity", "logout"):
            continue
        if event.get("roles") == ["anonymous"]:  # not counted, so in no segment
            continue
        day = datetime.fromtimestamp(_ts_ms(event["ts"]) / 1000, tz=TZ).date()
        if event["userId"] in found.days.get(day, set()):
            values.setdefault((day, event["properties"]["platform"]), set()).add(event["userId"])
    return values


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(tmp_path_factory, downloads) -> Iterator[Any]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        message = "Chromium or chromedriver missing (apt-get install chromium chromium-driver)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "profile.default_content_setting_values.automatic_downloads": 1,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


# --- driving the page ---------------------------------------------------------------------------------------------


def console_errors(driver: Any) -> list[str]:
    """The SEVERE console entries since the last call (reading the log empties it). The 404 of ``/favicon.ico``,
    which Chromium asks for on the JSON page that :func:`sign_in` visits, is not the dashboard's (it names its
    icon)."""
    entries = driver.get_log("browser")
    return [e["message"] for e in entries if e["level"] == "SEVERE" and "/favicon.ico " not in e["message"]]


def sign_in(driver: Any, base: str, user: str, token: str, clear_cache: bool = False) -> None:
    """Open the page with no stored credentials (and an empty cache if asked) and sign in; the panels start
    loading."""
    # sessionStorage outlives navigations in the tab: forget the credentials on a page of the same origin.
    driver.get(base + "/healthz")
    driver.execute_script("sessionStorage.clear()")
    if clear_cache:
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.get(base + "/")
    driver.find_element(By.ID, "user-id").send_keys(user)
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#signin button").click()


def open_signed_in(pipeline: Pipeline, driver: Any) -> None:
    """The page signed in to the module's pipeline, every panel loaded, the console log emptied."""
    console_errors(driver)
    sign_in(driver, pipeline.base, "browser-admin", pipeline.headers["X-Auth-Token"])
    wait_loaded(driver)


def loaded(driver: Any, panel: str) -> str | None:
    """The panel's ``data-loaded`` marker: a time stamp after each load, ``error`` after a failed one."""
    value: str | None = driver.find_element(By.ID, panel).get_attribute("data-loaded")
    return value


def wait_loaded(driver: Any, panels: tuple[str, ...] = PANELS, before: dict[str, str | None] | None = None) -> None:
    """Wait until every panel loaded without error (again, when ``before`` holds the previous load's markers)."""
    previous = before or {}
    for panel in panels:
        wait_until(
            lambda p=panel: loaded(driver, p) not in (None, "error", previous.get(p)), 20, f"panel {panel} did not load"
        )


def chart(driver: Any, selector: str) -> Any:
    """The data a chart element exposes as drawn."""
    return json.loads(driver.find_element(By.CSS_SELECTOR, selector).get_attribute("data-chart"))


def text(driver: Any, selector: str) -> str:
    value: str = driver.find_element(By.CSS_SELECTOR, selector).text
    return value


def value(driver: Any, element_id: str) -> str:
    found: str = driver.find_element(By.ID, element_id).get_attribute("data-value")
    return found


def download(driver: Any, downloads: Path, panel: str, name: str) -> str:
    """Click the panel's CSV button and return the file Chromium saved."""
    target = downloads / name
    target.unlink(missing_ok=True)
    driver.find_element(By.CSS_SELECTOR, f"#{panel} .csv").click()
    wait_until(lambda: target.exists() and not list(downloads.glob("*.crdownload")), 15, f"{name} not downloaded")
    return target.read_bytes().decode()  # as saved: the CSVs end their lines with CRLF


def whole_days(first: date, last: date) -> tuple[str, str]:
    """The page's query for a preset: ``first`` 00:00:00.000 .. ``last`` 23:59:59.999 in the zone."""
    start = datetime(first.year, first.month, first.day, tzinfo=TZ)
    end = datetime(last.year, last.month, last.day, 23, 59, 59, 999000, tzinfo=TZ)
    return iso(int(start.timestamp() * 1000)), iso(int(end.timestamp() * 1000))


def ms(instant: str) -> int:
    return int(datetime.fromisoformat(instant).timestamp() * 1000)


def dates(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def today() -> date:
    return datetime.now(tz=TZ).date()


def page_day(driver: Any) -> date:
    """The day the page calls today (its busiest-times day picker starts there). Tests read it rather than the
    clock, so a run that crosses midnight between loading the page and checking it still compares like with
    like."""
    return date.fromisoformat(driver.find_element(By.ID, "busy-day").get_attribute("value"))


# --- tests --------------------------------------------------------------------------------------------------------


def test_sign_in_and_the_active_users_panel_for_two_presets(pipeline, driver):
    console_errors(driver)
    sign_in(driver, pipeline.base, "browser-admin", "wrong-token")
    wait_until(lambda: text(driver, "#signin-error") != "", 15, "no sign-in error shown")
    assert text(driver, "#signin-error") == "You must be logged in to do this."
    # The wrong token's 401 is the one expected network error.
    errors = console_errors(driver)
    assert errors and all("401" in message for message in errors), errors
    driver.find_element(By.ID, "token").send_keys(pipeline.headers["X-Auth-Token"])
    driver.find_element(By.CSS_SELECTOR, "#signin button").click()
    wait_loaded(driver)
    days = pipeline.found().days
    for preset in (30, 7):
        if preset != 30:
            before = {"active": loaded(driver, "active")}
            driver.find_element(By.CSS_SELECTOR, f'#active button[data-days="{preset}"]').click()
            wait_loaded(driver, ("active",), before)
        day = page_day(driver)
        first = day - timedelta(days=preset - 1)
        start, end = whole_days(first, day)
        rows = pipeline.api(f"/api/v1/active-users/summary?start={start}&end={end}")["days"]
        drawn = chart(driver, "#active .chart")
        assert drawn["x"] == [r["date"] for r in rows]
        assert [s["values"] for s in drawn["series"]] == [[r[k] for r in rows] for k in ("dau", "wau", "mau")]
        oracle = [len(days.get(d, set())) for d in dates(first, day)]
        assert drawn["series"][0]["values"] == oracle
        assert value(driver, "dau") == str(oracle[-1])
        # Today's DAU is shown "so far"; the change compares yesterday with the day before, two whole days.
        assert value(driver, "dau-change") == str(oracle[-2] - oracle[-3])
        assert text(driver, "#dau-change").startswith(f"yesterday {oracle[-2]}, ")
        assert "so far today" in text(driver, "#active .counters")
        assert (value(driver, "wau"), value(driver, "mau")) == (str(rows[-1]["wau"]), str(rows[-1]["mau"]))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOT))
    print(f"screenshot: {SCREENSHOT}")
    assert console_errors(driver) == []


def test_the_new_users_panel_for_30_days(pipeline, driver, downloads):
    open_signed_in(pipeline, driver)
    found, day = pipeline.found(), page_day(driver)
    span = dates(day - timedelta(days=29), day)
    start, end = whole_days(span[0], day)
    answer = pipeline.api(f"{USERS}new-users?start={start}&end={end}")
    assert answer == expected_new_users(found.created, ms(start), ms(end), TZ)
    per_day = [len(found.created.get(d, set())) for d in span]
    assert sum(per_day) > 0
    assert chart(driver, "#new .chart") == {
        "x": [d.isoformat() for d in span],
        "series": [{"label": "New users", "values": per_day}],
    }
    assert value(driver, "new-count") == str(answer["period"]["count"]) == str(sum(per_day))
    assert value(driver, "new-variation") == str(answer["period"]["variation"])
    expected_csv = ["date,new_users"] + [f"{d.isoformat()},{n}" for d, n in zip(span, per_day, strict=True)]
    assert download(driver, downloads, "new", "new.csv").splitlines() == expected_csv
    assert console_errors(driver) == []


def test_the_time_of_day_panel_for_7_days(pipeline, driver, downloads):
    """Up to now: no event is newer than the seed's now (the live test, which adds some, runs last)."""
    open_signed_in(pipeline, driver)
    found, day = pipeline.found(), page_day(driver)
    span = dates(day - timedelta(days=6), day)
    start = whole_days(span[0], day)[0]
    answer = pipeline.api(f"{USERS}users-by-time-of-the-day-in-a-week?start={start}&end={iso(pipeline.now)}")
    assert answer == expected_by_time_of_day(found.hours, ms(start), pipeline.now, TZ)
    grid = [[len(found.hours.get((d, h), set())) for h in range(24)] for d in span]
    from_api = {(date(e["year"], e["month"], e["day"]), e["hour"]): e["users"] for e in answer["week"]}
    assert grid == [[from_api.get((d, h), 0) for h in range(24)] for d in span]
    assert chart(driver, "#tod .heat") == {"x": [d.isoformat() for d in span], "hours": grid}
    # The axes are labelled: the hours down the first column, the days along the first row.
    labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#tod .heat span")]
    assert labels == ["hour", *(f"{h:02d}:00" for h in range(24)), *(d.isoformat()[5:] for d in span)]
    cells = [f"{d.isoformat()},{h},{grid[i][h]}" for i, d in enumerate(span) for h in range(24)]
    assert download(driver, downloads, "tod", "tod.csv").splitlines() == ["date,hour,users", *cells]
    assert console_errors(driver) == []


def check_busiest_times(pipeline: Pipeline, driver: Any, downloads: Path, day: date) -> int:
    """The busy panel shows ``day``: its two-hour slots as the hourly data answers them (none for a day without
    users), its last 8 days, and its CSV, all equal to the API's answers and the oracle. Returns the day's users
    per slot summed, so a caller can tell which case it checked."""
    found = pipeline.found()
    at = whole_days(day, day)[1]
    hourly = pipeline.api(f"{USERS}chat-busier/hourly-data?start={at}")
    assert hourly == expected_hourly(found.hours, ms(at), TZ)
    slots = [s["users"] for s in reversed(hourly["hours"])]
    labels = [f"{s['hour']:02d}-{s['hour'] + 2:02d}" for s in reversed(hourly["hours"])]
    if slots:
        assert labels == [f"{h:02d}-{h + 2:02d}" for h in range(0, 24, 2)]
        pairs = [found.hours.get((day, h), set()) | found.hours.get((day, h + 1), set()) for h in range(0, 24, 2)]
        assert slots == [len(users) for users in pairs]
    assert chart(driver, "#busy-hours") == {"x": labels, "series": [{"label": "Users per 2 hours", "values": slots}]}
    assert text(driver, "#busy .status") == ("" if slots else f"No active users on {day.isoformat()}.")
    week = dates(day - timedelta(days=7), day)
    weekly = pipeline.api(f"{USERS}chat-busier/weekly-data?start={at}")
    assert weekly == expected_weekly(found.days, ms(at), TZ)
    per_day = [len(found.days.get(d, set())) for d in week]
    assert chart(driver, "#busy-week") == {
        "x": [d.isoformat() for d in week],
        "series": [{"label": "Users per day", "values": per_day}],
    }
    busy_csv = [f"{day.isoformat()} {label},{n}" for label, n in zip(labels, slots, strict=True)]
    busy_csv += [f"{d.isoformat()},{n}" for d, n in zip(week, per_day, strict=True)]
    assert download(driver, downloads, "busy", "busy.csv").splitlines() == ["slot_or_day,users", *busy_csv]
    return sum(slots)


def test_the_busiest_times_of_today_and_of_the_day_before(pipeline, driver, downloads):
    """The panel opens on today (which has no users yet just after midnight: the seed leaves out the last
    minutes); the day before always has some, so the drawn slots are checked too."""
    before = today()
    open_signed_in(pipeline, driver)
    day = page_day(driver)
    assert before <= day <= today()
    check_busiest_times(pipeline, driver, downloads, day)
    loaded_before = {"busy": loaded(driver, "busy")}
    driver.find_element(By.ID, "busy-prev").click()
    wait_loaded(driver, ("busy",), loaded_before)
    assert page_day(driver) == day - timedelta(days=1)
    assert check_busiest_times(pipeline, driver, downloads, day - timedelta(days=1)) > 0
    assert console_errors(driver) == []


def test_the_active_users_csv_is_the_servers(pipeline, driver, downloads):
    open_signed_in(pipeline, driver)
    day = page_day(driver)
    start, end = whole_days(day - timedelta(days=29), day)
    status, body = http_get(
        f"{pipeline.base}/api/v1/active-users/summary?start={start}&end={end}&format=csv", pipeline.headers
    )
    assert status == 200
    assert download(driver, downloads, "active", "active-users.csv") == body.decode()
    assert console_errors(driver) == []


def test_a_day_without_users_shows_the_empty_text(pipeline, driver):
    open_signed_in(pipeline, driver)
    empty = (page_day(driver) - timedelta(days=60)).isoformat()
    before = {"busy": loaded(driver, "busy")}
    driver.execute_script(
        "const d = document.getElementById('busy-day'); d.value = arguments[0];d.dispatchEvent(new Event('change'));",
        empty,
    )
    wait_loaded(driver, ("busy",), before)
    assert text(driver, "#busy .status") == f"No active users on {empty}."
    assert chart(driver, "#busy-hours")["series"][0]["values"] == []
    assert chart(driver, "#busy-week")["series"][0]["values"] == [0] * 8
    assert driver.find_elements(By.CSS_SELECTOR, "#busy canvas") == []
    assert console_errors(driver) == []


def test_a_prefix_without_data_shows_empty_texts_not_blank_charts(pipeline, driver, redis_prefix, tmp_path):
    env = {**pipeline.env, "REDIS_KEY_PREFIX": redis_prefix}
    headers = cli_token(env, "empty-admin")
    api, base = start_api(env, tmp_path / "api.log")
    try:
        console_errors(driver)
        sign_in(driver, base, "empty-admin", headers["X-Auth-Token"])
        wait_loaded(driver)
        statuses = {panel: text(driver, f"#{panel} .status") for panel in PANELS}
        assert statuses == {
            "active": "No active users in this period yet.",
            "new": "No new users in this period.",
            "tod": "No active users in this period yet.",
            "busy": f"No active users on {page_day(driver).isoformat()}.",
            "retention": "No cohort has members in this range.",
            "sticky": "No active users in this period yet.",
            "platforms": "No platform reported in this period yet.",
        }
        assert value(driver, "dau") == value(driver, "new-count") == "0"
        assert driver.find_elements(By.CSS_SELECTOR, "#panels canvas, .heat div") == []
        assert console_errors(driver) == []
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0


def test_a_deployment_without_the_platform_property_says_so_in_its_panel(pipeline, driver, tmp_path):
    env = {**pipeline.env, "SEGMENT_PROPERTIES": "none"}
    api, base = start_api(env, tmp_path / "api.log")
    try:
        console_errors(driver)
        sign_in(driver, base, "browser-admin", pipeline.headers["X-Auth-Token"])
        wait_loaded(driver)
        assert text(driver, "#platforms .status") == (
            "Platforms are not indexed here (SEGMENT_PROPERTIES does not name platform)."
        )
        assert driver.find_elements(By.CSS_SELECTOR, "#platforms canvas") == []
        assert not driver.find_element(By.CSS_SELECTOR, "#platforms .csv").is_displayed()
        assert not driver.find_element(By.ID, "segment-label").is_displayed()
        assert value(driver, "dau") != "0"  # the other panels answer as before
        assert console_errors(driver) == []
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0


def test_redis_down_shows_the_503_message(pipeline, driver, tmp_path):
    env = {**pipeline.env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    api, base = start_api(env, tmp_path / "api.log")
    try:
        status, body = http_get(f"{base}/api/v1/active-users/summary?start={iso(0)}&end={iso(0)}", pipeline.headers)
        assert (status, orjson.loads(body)["error"]) == (503, UNAVAILABLE)
        console_errors(driver)
        sign_in(driver, base, "browser-admin", pipeline.headers["X-Auth-Token"])
        wait_until(lambda: all(loaded(driver, p) == "error" for p in PANELS), 30, "the panels did not fail")
        assert {panel: text(driver, f"#{panel} .status") for panel in PANELS} == dict.fromkeys(PANELS, UNAVAILABLE)
        page = text(driver, "body")
        assert "Traceback" not in page and "ApiError" not in page
        errors = console_errors(driver)
        assert errors and all("503" in message for message in errors), errors
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0


def select(driver: Any, element_id: str, value: str) -> None:
    driver.execute_script(
        "const s = document.getElementById(arguments[0]); s.value = arguments[1];s.dispatchEvent(new Event('change'));",
        element_id,
        value,
    )


def test_the_retention_table_for_each_period_and_cohort(pipeline, driver, downloads):
    open_signed_in(pipeline, driver)
    day = page_day(driver)
    firsts = {"day": day - timedelta(days=11), "week": day - timedelta(days=day.weekday() + 77)}
    firsts["month"] = date(day.year - (day.month <= 11), (day.month - 12) % 12 + 1, 1)
    for period, cohort in (("week", "first"), ("month", "new"), ("day", "active")):
        before = {"retention": loaded(driver, "retention")}
        select(driver, "retention-cohort", cohort)
        select(driver, "retention-period", period)
        wait_loaded(driver, ("retention",), before)
        start, end = whole_days(firsts[period], day)
        query = f"?start={start}&end={end}&period={period}&cohort={cohort}&periods=12"
        answer = pipeline.api("/api/v1/active-users/retention" + query)
        assert chart(driver, "#retention table") == answer["cohorts"]
        rows = driver.find_elements(By.CSS_SELECTOR, "#retention tr")
        assert len(rows) == len(answer["cohorts"]) + 1 == 13
        assert rows[1].text.split()[:3] == [
            answer["cohorts"][0]["start"],
            str(answer["cohorts"][0]["size"]),
            str(answer["cohorts"][0]["returned"][0]),
        ]
    assert sum(row["size"] for row in answer["cohorts"]) > 0
    _, csv = http_get(pipeline.base + "/api/v1/active-users/retention" + query + "&format=csv", pipeline.headers)
    assert download(driver, downloads, "retention", "retention.csv") == csv.decode()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    driver.find_element(By.ID, "retention").screenshot(str(SCREENSHOT.with_name("dashboard-retention.png")))
    assert console_errors(driver) == []


def test_the_stickiness_histogram(pipeline, driver, downloads):
    open_signed_in(pipeline, driver)
    found, day = pipeline.found(), page_day(driver)
    span = dates(day - timedelta(days=29), day)
    counts: dict[str, int] = {}
    for d in span:
        for user in found.days.get(d, set()):
            counts[user] = counts.get(user, 0) + 1
    histogram = [sum(1 for n in counts.values() if n == k) for k in range(1, 31)]
    assert chart(driver, "#sticky .chart") == {
        "x": [str(k) for k in range(1, 31)],
        "series": [{"label": "Users active on exactly this many days", "values": histogram}],
    }
    start, end = whole_days(span[0], day)
    _, csv = http_get(
        f"{pipeline.base}/api/v1/active-users/stickiness?start={start}&end={end}&format=csv", pipeline.headers
    )
    assert download(driver, downloads, "sticky", "stickiness.csv") == csv.decode()
    assert console_errors(driver) == []


def test_the_platform_breakdown_and_the_selector_segmenting_every_panel_that_takes_it(pipeline, driver, downloads):
    open_signed_in(pipeline, driver)
    day = page_day(driver)
    span = dates(day - timedelta(days=29), day)
    values = platform_days(pipeline)
    drawn = chart(driver, "#platforms .chart")
    assert drawn["x"] == [d.isoformat() for d in span]
    expected = {}
    for platform in PLATFORMS:
        distinct = set().union(*(values.get((d, platform), set()) for d in span))
        expected[f"{platform} ({len(distinct)})"] = [len(values.get((d, platform), set())) for d in span]
    got = {s["label"]: s["values"] for s in drawn["series"]}
    assert got == expected, [(k, got.get(k), v) for k, v in expected.items() if got.get(k) != v]
    start, end = whole_days(span[0], day)
    _, csv = http_get(
        f"{pipeline.base}/api/v1/active-users/breakdown?start={start}&end={end}&property=platform&format=csv",
        pipeline.headers,
    )
    assert download(driver, downloads, "platforms", "platforms.csv") == csv.decode()
    options = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#segment option")]
    assert options[0] == "" and sorted(options[1:]) == sorted(PLATFORMS)
    before = {panel: loaded(driver, panel) for panel in ("active", "retention", "sticky")}
    select(driver, "segment", "ios")
    wait_loaded(driver, ("active", "retention", "sticky"), before)
    ios = {d: values.get((d, "ios"), set()) for d in span}
    active = chart(driver, "#active .chart")
    assert active["series"][0]["values"] == [len(ios[d]) for d in span]
    assert value(driver, "dau") == str(len(ios[day]))
    segment = "&segment=platform%3Aios"
    sticky = pipeline.api(f"/api/v1/active-users/stickiness?start={start}&end={end}{segment}")
    assert chart(driver, "#sticky .chart")["series"][0]["values"] == sticky["activeDays"]
    whole = pipeline.api(f"/api/v1/active-users/stickiness?start={start}&end={end}")
    assert 0 < sticky["distinctUsers"] < whole["distinctUsers"]
    first = day - timedelta(days=day.weekday() + 77)
    since, until = whole_days(first, day)
    retention = pipeline.api(
        f"/api/v1/active-users/retention?start={since}&end={until}&period=week&cohort=first&periods=12{segment}"
    )
    assert chart(driver, "#retention table") == retention["cohorts"]
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")  # the header's platform selector and the segmented panel
    driver.save_screenshot(str(SCREENSHOT.with_name("dashboard-platforms.png")))
    select(driver, "segment", "")
    assert console_errors(driver) == []


def test_the_page_weighs_under_300_kilobytes_as_transferred(pipeline, driver):
    console_errors(driver)
    sign_in(driver, pipeline.base, "browser-admin", pipeline.headers["X-Auth-Token"], clear_cache=True)
    wait_loaded(driver)
    entries = driver.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".map((e) => ({name: e.name, size: e.transferSize}));"
    )
    names = [e["name"] for e in entries]
    assert any(name.endswith("/vendor/uPlot.iife.min.js") for name in names), names
    assert any("/api/v1/active-users/summary" in name for name in names), names
    # Nothing came from the cache, so the sum is what a first visit transfers.
    assert all(e["size"] > 0 for e in entries), entries
    total = sum(e["size"] for e in entries)
    print(f"page weight as transferred: {total} bytes in {len(entries)} requests")
    assert total < PAGE_BUDGET_BYTES
    assert console_errors(driver) == []


def test_the_live_toggle_refreshes(pipeline, driver):
    """Kept last: it stores more events (added to the pipeline's oracle too)."""
    open_signed_in(pipeline, driver)
    live = driver.find_element(By.ID, "live")
    assert not live.is_selected()  # off by default
    dau, new, asof = int(value(driver, "dau")), int(value(driver, "new-count")), text(driver, "#asof")
    assert asof.startswith("as of ")
    now = int(time.time() * 1000)
    fresh = [f"live-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    events = [{"type": kind, "userId": u, "ts": iso(now)} for u in fresh for kind in ("user.created", "login")]
    added = [Sent(e["userId"].encode(), orjson.dumps(e), e) for e in events]
    ingest(pipeline.env, added, pipeline.tmp)
    pipeline.sent.extend(added)
    # The point: a wait longer than the live period, through which nothing may change while live is off.
    time.sleep(6)
    assert (int(value(driver, "dau")), text(driver, "#asof")) == (dau, asof)
    live.click()
    wait_until(lambda: int(value(driver, "dau")) == dau + len(fresh), 20, "live did not show the new users")
    wait_until(lambda: int(value(driver, "new-count")) == new + len(fresh), 20, "live did not show the new users")
    assert text(driver, "#asof") != asof
    found = pipeline.found()
    assert chart(driver, "#active .chart")["series"][0]["values"][-1] == len(found.days[page_day(driver)])
    live.click()
    assert console_errors(driver) == []
