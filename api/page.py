"""The dashboard page: static files of ``api/static`` served with content-hashed URLs and security headers.

The HTML names its assets as ``{{name}}``; :class:`Page` replaces each by ``/dashboard/assets/<hash>/<name>`` so
that assets can be cached for a year (a changed file gets a new URL) while the HTML itself is revalidated.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web

ASSET_PREFIX: Final = "/dashboard/assets/"
# No inline script or style, nothing from another origin; the page only talks to this API.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}
ASSETS: Final = (
    "dashboard.js",
    "dashboard.css",
    "favicon.svg",
    "vendor/uPlot.iife.min.js",
    "vendor/uPlot.min.css",
)
_PLACEHOLDER: Final = re.compile(r"\{\{([A-Za-z0-9_./-]+)\}\}")


@dataclass(frozen=True, slots=True)
class Asset:
    """One file's bytes and content type."""

    body: bytes
    content_type: str


class Page:
    """The page's HTML and assets, read once from the package (lazily, so building the app does no I/O)."""

    def __init__(self) -> None:
        self._html: bytes | None = None
        self._assets: dict[str, Asset] = {}

    def _load(self) -> None:
        root = Path(__file__).resolve().parent / "static"
        urls: dict[str, str] = {}
        for name in ASSETS:
            body = (root / name).read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:16]
            path = f"{digest}/{name}"
            suffix = name[name.rfind(".") :]
            self._assets[path] = Asset(body, TYPES[suffix])
            urls[name] = ASSET_PREFIX + path
        template = (root / "dashboard.html").read_text()
        self._html = _PLACEHOLDER.sub(lambda m: urls[m.group(1)], template).encode()

    def html(self) -> bytes:
        """The page, with its assets' hashed URLs."""
        if self._html is None:
            self._load()
        assert self._html is not None
        return self._html

    def asset(self, path: str) -> Asset | None:
        """The asset at ``<hash>/<name>``, or None when there is none (an old hash included)."""
        if self._html is None:
            self._load()
        return self._assets.get(path)


PAGE: Final = web.AppKey("page", Page)


async def dashboard(request: web.Request) -> web.Response:
    """The dashboard's HTML: revalidated on every load, so new asset hashes are picked up at once."""
    headers = {"Content-Type": TYPES[".html"], "Cache-Control": "no-cache", **SECURITY}
    response = web.Response(body=request.app[PAGE].html(), headers=headers)
    response.enable_compression()
    return response


async def asset(request: web.Request) -> web.Response:
    """A hashed asset, cacheable for a year; 404 for any other path."""
    found = request.app[PAGE].asset(request.match_info["path"])
    if found is None:
        raise web.HTTPNotFound()
    headers = {
        "Content-Type": found.content_type,
        "Cache-Control": "public, max-age=31536000, immutable",
        **SECURITY,
    }
    response = web.Response(body=found.body, headers=headers)
    response.enable_compression()
    return response


async def root(request: web.Request) -> web.Response:
    """``/`` leads to the dashboard."""
    raise web.HTTPFound("/dashboard", headers={"Cache-Control": "no-cache"})
