"""The dashboard page's serving: the redirect, security and cache headers, hashed assets, no inline code."""

from __future__ import annotations

import re

from activeusers.settings import Settings
from api.app import create_app
from api.page import CSP


async def test_root_redirects_to_the_dashboard(aiohttp_client):
    client = await aiohttp_client(create_app(Settings()))
    response = await client.get("/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/dashboard"


async def test_page_and_assets_carry_security_and_cache_headers(aiohttp_client):
    client = await aiohttp_client(create_app(Settings()))
    response = await client.get("/dashboard")
    html = await response.text()
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Content-Security-Policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in html and "style=" not in html and not re.search(r"\son[a-z]+=", html)
    urls = re.findall(r'(?:src|href)="(/dashboard/assets/[^"]+)"', html)
    assert len(urls) == 5
    total = len(html.encode())
    for url in urls:
        asset = await client.get(url)
        body = await asset.read()
        total += len(body)
        assert asset.status == 200, url
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        assert asset.headers["Content-Security-Policy"] == CSP
    assert total < 300_000
    missing = await client.get("/dashboard/assets/0000000000000000/dashboard.js")
    assert missing.status == 404


async def test_json_endpoints_keep_their_headers(aiohttp_client):
    client = await aiohttp_client(create_app(Settings()))
    response = await client.get("/api/openapi.json")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
