"""The dashboard page: static files of ``api/static`` served with content-hashed URLs and security headers.

The HTML names its assets as ``{{name}}``; :class:`Page` replaces each by ``/dashboard/assets/<hash>/<name>`` so
that assets can be cached for a year (a changed file gets a new URL) while the HTML itself is revalidated.

Everything is prepared once, when the files are first read: each file's gzip form (sent to a client that accepts
it; compressing per request cost about a millisecond of the event loop for uPlot's 51 kB) and its ``ETag``, so
that a revalidation (``If-None-Match``) is a 304 without a body. No answer here touches Redis.
"""

from __future__ import annotations

import gzip
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
    """One file's bytes, content type, gzip form (``None`` when that is not smaller) and ``ETag``."""

    body: bytes
    content_type: str
    gzipped: bytes | None
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        """The file ``body`` with its gzip form and entity tag prepared."""
        # mtime=0: the same file always compresses to the same bytes.
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        return cls(body, content_type, packed if len(packed) < len(body) else None, etag)


class Page:
    """The page's HTML and assets, read once from the package (lazily, so building the app does no I/O)."""

    def __init__(self) -> None:
        self._html: Asset | None = None
        self._assets: dict[str, Asset] = {}

    def _load(self) -> Asset:
        root = Path(__file__).resolve().parent / "static"
        urls: dict[str, str] = {}
        for name in ASSETS:
            body = (root / name).read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:16]
            path = f"{digest}/{name}"
            suffix = name[name.rfind(".") :]
            self._assets[path] = Asset.of(body, TYPES[suffix])
            urls[name] = ASSET_PREFIX + path
        template = (root / "dashboard.html").read_text()
        self._html = Asset.of(_PLACEHOLDER.sub(lambda m: urls[m.group(1)], template).encode(), TYPES[".html"])
        return self._html

    def html(self) -> Asset:
        """The page, with its assets' hashed URLs."""
        return self._html or self._load()

    def asset(self, path: str) -> Asset | None:
        """The asset at ``<hash>/<name>``, or None when there is none (an old hash included)."""
        if self._html is None:
            self._load()
        return self._assets.get(path)


PAGE: Final = web.AppKey("page", Page)


async def dashboard(request: web.Request) -> web.Response:
    """The dashboard's HTML: revalidated on every load, so new asset hashes are picked up at once."""
    return _served(request, request.app[PAGE].html(), "no-cache")


async def asset(request: web.Request) -> web.Response:
    """A hashed asset, cacheable for a year; 404 for any other path."""
    found = request.app[PAGE].asset(request.match_info["path"])
    if found is None:
        raise web.HTTPNotFound()
    return _served(request, found, "public, max-age=31536000, immutable")


def _served(request: web.Request, file: Asset, cache_control: str) -> web.Response:
    """``file`` as the request wants it: a 304 without body when it holds the current version (``If-None-Match``),
    else the file, gzipped when the client accepts gzip."""
    headers = {
        "Content-Type": file.content_type,
        "Cache-Control": cache_control,
        "ETag": file.etag,
        "Vary": "Accept-Encoding",
        **SECURITY,
    }
    if _matches(request.headers.get("If-None-Match", ""), file.etag):
        return web.Response(status=304, headers=headers)
    if file.gzipped is not None and _accepts_gzip(request.headers.get("Accept-Encoding", "")):
        return web.Response(body=file.gzipped, headers={**headers, "Content-Encoding": "gzip"})
    return web.Response(body=file.body, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (or ``*``); weak tags compare by their value."""
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return etag in tags or "*" in tags


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip: named with a quality above 0, or not named and ``*``
    accepted."""
    qualities: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        qualities[name.strip().lower()] = quality
    if "gzip" in qualities:
        return qualities["gzip"] > 0
    return qualities.get("*", 0.0) > 0


async def root(request: web.Request) -> web.Response:
    """``/`` leads to the dashboard."""
    raise web.HTTPFound("/dashboard", headers={"Cache-Control": "no-cache"})
