"""``GET /viewer``: the twin viewer, a static page (HTML, JS, CSS and vendored uPlot) that calls
the v1 API from the browser with the user's API key (see ``api/viewer/static/vendor/VENDORED.md``).

The page is the API's presentation, not a second backend: these routes serve files only, need
no key (the page holds no data; every data call it makes is authenticated) and send a strict
Content-Security-Policy (scripts, styles and connections from this origin only), so the page
works offline and nothing it shows can be sent elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from api.errors import ProblemError

__all__ = ["STATIC_DIR", "router"]

#: The page's files, shipped inside the package (``pyproject.toml`` package-data).
STATIC_DIR = Path(__file__).resolve().parents[1] / "viewer" / "static"

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["viewer"], include_in_schema=False)


@router.get("/viewer")
def viewer_root() -> RedirectResponse:
    """The page lives at ``/viewer/`` so its relative links resolve inside it."""
    return RedirectResponse("/viewer/", status_code=308)


@router.get("/viewer/{path:path}")
def viewer_file(path: str) -> FileResponse:
    """``index.html`` for ``/viewer/``, else the named file of the page (404 outside it)."""
    target = (STATIC_DIR / (path or "index.html")).resolve()
    if not target.is_relative_to(STATIC_DIR) or not target.is_file() or target.suffix not in _TYPES:
        raise ProblemError(404, f"the viewer has no file {path!r}", kind="not-found")
    return FileResponse(target, media_type=_TYPES[target.suffix], headers=_HEADERS)
