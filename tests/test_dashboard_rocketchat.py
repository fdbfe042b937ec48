"""The dashboard's sign-in with a Rocket.Chat user id and token, in a real headless Chromium, against the real API
process (``ROCKETCHAT_URL`` set to the stand-in Rocket.Chat of ``tests/rocketchat_standin.py``) on the real Redis:
the page says which kind of token it accepted, ours or Rocket.Chat's, and shows Rocket.Chat's refusals."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from api.auth import VIEW_ENGAGEMENT_DASHBOARD
from api.errors import LOGIN_REQUIRED
from tests.support.processes import cli_token, consumer_env, start_api
from tests.support.rocketchat_standin import StandIn, served_in_thread
from tests.support.waiting import wait_until
from tests.test_dashboard_browser import console_errors, downloads, driver, sign_in, wait_loaded

__all__ = ["downloads", "driver"]  # the browser fixtures of test_dashboard_browser, shared

RC_TOKEN = "rc-personal-access-token-browser-0123456789ab"


@pytest.fixture(scope="module")
def rocketchat_url() -> Iterator[str]:
    """The stand-in Rocket.Chat, served while the module runs."""
    rc = StandIn()
    rc.add_user("rc-admin", RC_TOKEN, ["user", "admin"])
    rc.add_user("rc-user", "rc-user-token", ["user"])
    rc.set_permission(VIEW_ENGAGEMENT_DASHBOARD, ["admin"])
    with served_in_thread(rc) as url:
        yield url


@pytest.fixture(scope="module")
def site(stack, module_redis_prefix, rocketchat_url, tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """The API with ``ROCKETCHAT_URL`` set (no data needed: the panels load empty), and one of our tokens."""
    env = consumer_env(stack, "unused", module_redis_prefix, f"g-{uuid.uuid4().hex[:8]}", ROCKETCHAT_URL=rocketchat_url)
    api, base = start_api(env, tmp_path_factory.mktemp("rc-dashboard") / "api.log")
    try:
        yield base, cli_token(env, "our-admin")
    finally:
        api.terminate()
        assert api.wait(timeout=15) == 0


def signed_in_as(driver: Any) -> tuple[str, str]:
    who = driver.find_element(By.ID, "who")
    return who.get_attribute("data-source"), who.text


def test_the_page_signs_in_with_a_rocketchat_token_and_says_so(driver, site):
    base, ours = site
    console_errors(driver)
    sign_in(driver, base, "rc-admin", RC_TOKEN)
    wait_loaded(driver)
    assert signed_in_as(driver) == ("rocketchat", "Signed in as rc-admin with a Rocket.Chat token")
    sign_in(driver, base, "our-admin", ours["X-Auth-Token"])
    wait_loaded(driver)
    assert signed_in_as(driver) == ("active-users", "Signed in as our-admin with an active-users token")
    assert console_errors(driver) == []


@pytest.mark.parametrize(
    ("user", "token", "error"),
    [
        ("rc-admin", "not-the-token", LOGIN_REQUIRED),
        ("rc-user", "rc-user-token", "User does not have the permissions required for this action"),
    ],
)
def test_rocketchat_refusals_sign_out_with_their_message(driver, site, user, token, error):
    base, _ = site
    sign_in(driver, base, user, token)
    form, shown = driver.find_element(By.ID, "signin"), driver.find_element(By.ID, "signin-error")
    wait_until(lambda: form.is_displayed() and shown.text, 20, "the page did not sign out")
    assert shown.text.startswith(error)
    assert signed_in_as(driver) == ("", "")
