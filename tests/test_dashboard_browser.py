"""The dashboard in a real headless Chromium against the real Kafka, consumer, Redis and API: sign-in, counters
and chart data equal to the API's answers and the event oracle for two presets, a wrong token's error, no console
errors, and a screenshot at ``.ci/artifacts/dashboard.png``."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from streams import (
    REPO_ROOT,
    ConsumerProcess,
    activity,
    consumer_env,
    generate,
    http_get,
    in_ci,
    produce,
    start_api,
    wait_drained,
    wait_until,
)
from test_end_to_end import cli_token

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = REPO_ROOT / ".ci" / "artifacts" / "dashboard.png"
ZONE = "UTC"


def browser(tmp_path):
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
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_dashboard_in_chromium(stack, topic, redis_prefix, tmp_path):
    from selenium.webdriver.common.by import By

    name = topic(3)
    now = int(time.time() * 1000)
    sent = generate(313, 4000, now, users=300, days=40, avoid_days_ago=(0, 0.01))
    env = consumer_env(stack, name, redis_prefix, f"g-{uuid.uuid4().hex[:8]}", ACTIVITY_TIMEZONE=ZONE)
    produce(stack.kafka_bootstrap, name, sent)
    consumer = ConsumerProcess(env, tmp_path / "consumer.log")
    try:
        wait_drained(stack.kafka_bootstrap, env["KAFKA_GROUP_ID"], name)
    finally:
        assert consumer.stop() == 0
    headers = cli_token(env, "browser-admin")
    api, base = start_api(env, tmp_path / "api.log")
    driver = browser(tmp_path)
    zone = ZoneInfo(ZONE)
    days = activity((s.event for s in sent), zone, now, 400).days
    today = datetime.fromtimestamp(now / 1000, tz=zone).date()
    try:
        driver.get(base + "/")
        driver.find_element(By.ID, "user-id").send_keys("browser-admin")
        driver.find_element(By.ID, "token").send_keys("wrong-token")
        driver.find_element(By.CSS_SELECTOR, "#signin button").click()
        wait_until(lambda: driver.find_element(By.ID, "signin-error").text != "", 15, "no sign-in error shown")
        assert driver.find_element(By.ID, "signin-error").text == "You must be logged in to do this."
        # The wrong token's 401 is the one expected network error; reading the log empties it.
        assert all("401" in e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE")
        driver.find_element(By.ID, "token").send_keys(headers["X-Auth-Token"])
        driver.find_element(By.CSS_SELECTOR, "#signin button").click()
        for preset in (30, 7):
            panel = driver.find_element(By.ID, "active")
            marker = panel.get_attribute("data-loaded") if preset != 30 else None
            if preset != 30:
                panel.find_element(By.CSS_SELECTOR, f'button[data-days="{preset}"]').click()
            wait_until(
                lambda m=marker: (driver.find_element(By.ID, "active").get_attribute("data-loaded") or m) != m,
                20,
                "active panel did not load",
            )
            first = today - timedelta(days=preset - 1)
            start = f"{first.isoformat()}T00:00:00.000Z"
            end = f"{today.isoformat()}T23:59:59.999Z"
            status, body = http_get(f"{base}/api/v1/active-users/summary?start={start}&end={end}", headers)
            assert status == 200
            rows = orjson.loads(body)["days"]
            chart = json.loads(panel.find_element(By.CSS_SELECTOR, ".chart").get_attribute("data-chart"))
            assert chart["x"] == [r["date"] for r in rows]
            assert chart["series"][0]["values"] == [r["dau"] for r in rows]
            assert chart["series"][2]["values"] == [r["mau"] for r in rows]
            oracle = [len(days.get(first + timedelta(days=i), set())) for i in range(preset)]
            assert chart["series"][0]["values"] == oracle
            assert driver.find_element(By.ID, "dau").get_attribute("data-value") == str(oracle[-1])
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        print(f"screenshot: {SCREENSHOT}")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
        api.terminate()
        assert api.wait(timeout=15) == 0
