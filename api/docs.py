"""The interactive API docs (`/docs`, `/redoc`), served from this server with no third party.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, without integrity checks, on the
origin where the dashboard keeps the owner's token. Here their files come from the
`fastapi-offline` package, the page starts them from a file of ours (no inline script), and
the dashboard's Content-Security-Policy applies.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.pages import SECURITY_HEADERS, static_url, templates

ASSETS = Path(str(resources.files("fastapi_offline") / "static"))

router = APIRouter(include_in_schema=False)
router.mount("/docs-assets", StaticFiles(directory=ASSETS), name="docs-assets")

# ReDoc styles itself with <style> elements it writes at run time; scripts stay 'self' only.
REDOC_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"].replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'"
    ),
}


def _page(request: Request, name: str, headers: dict[str, str]) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, {"static_url": static_url})
    response.headers.update(headers)
    return response


@router.get("/docs", response_class=HTMLResponse)
async def read_swagger_ui(request: Request) -> HTMLResponse:
    return _page(request, "docs_swagger.html", SECURITY_HEADERS)


@router.get("/redoc", response_class=HTMLResponse)
async def read_redoc(request: Request) -> HTMLResponse:
    return _page(request, "docs_redoc.html", REDOC_HEADERS)
