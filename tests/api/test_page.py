"""The dashboard page's serving: the redirect, security and cache headers, hashed assets, no inline code."""

from __future__ import annotations

import gzip
import re

import pytest

from activeusers.settings import Settings
from api.app import create_app
from api.page import CSP, _accepts_gzip


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


async def test_a_revalidation_is_a_304_without_a_body(aiohttp_client):
    client = await aiohttp_client(create_app(Settings()))
    page = await client.get("/dashboard")
    html = await page.text()
    etag = page.headers["ETag"]
    again = await client.get("/dashboard", headers={"If-None-Match": f'W/"other", {etag}'})
    assert (again.status, await again.read()) == (304, b"")
    assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == "no-cache"
    assert (await client.get("/dashboard", headers={"If-None-Match": '"other"'})).status == 200
    url = re.findall(r'src="(/dashboard/assets/[^"]+)"', html)[0]
    asset = await client.get(url)
    cached = await client.get(url, headers={"If-None-Match": asset.headers["ETag"]})
    assert (cached.status, await cached.read()) == (304, b"")
    assert cached.headers["Cache-Control"] == "public, max-age=31536000, immutable"


async def test_files_go_gzipped_to_a_client_that_accepts_gzip(aiohttp_client):
    client = await aiohttp_client(create_app(Settings()), auto_decompress=False)
    html = (await (await client.get("/dashboard", headers={"Accept-Encoding": "identity"})).read()).decode()
    url = next(u for u in re.findall(r'src="(/dashboard/assets/[^"]+)"', html) if u.endswith("uPlot.iife.min.js"))
    plain = await client.get(url, headers={"Accept-Encoding": "identity"})
    body = await plain.read()
    assert "Content-Encoding" not in plain.headers and plain.headers["Vary"] == "Accept-Encoding"
    packed = await client.get(url, headers={"Accept-Encoding": "br, gzip;q=0.5"})
    assert packed.headers["Content-Encoding"] == "gzip" and packed.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(await packed.read()) == body and int(packed.headers["Content-Length"]) < len(body) / 2
    assert packed.headers["ETag"] == plain.headers["ETag"]  # the same file, whatever its transfer form
    refused = await client.get(url, headers={"Accept-Encoding": "gzip;q=0, *"})
    assert "Content-Encoding" not in refused.headers and await refused.read() == body


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("GZIP;q=0.1", True),
        ("*", True),
        ("identity", False),
        ("", False),
        ("gzip;q=0", False),
        ("gzip; q=0.0, *", False),
        ("*;q=0", False),
        ("gzip;q=oops", False),
    ],
)
def test_accept_encoding_is_read_with_its_qualities(header, gzipped):
    assert _accepts_gzip(header) is gzipped
