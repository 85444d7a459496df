"""The web page: ``GET /`` (the app, or the sign-in form), ``POST /signin``,
``POST /signout`` and the static files under ``/static``. The page is a
client of the JSON API under ``/v1`` like any other (it never reaches the
store by another road); it signs in with a session cookie instead of the key
(see :mod:`ragdb.serve.signin`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ragdb.serve.deps import Service, ServiceDep
from ragdb.serve.signin import cookie_header
from ragdb.version import __version__

HERE = Path(__file__).resolve().parent.parent
STATIC = HERE / "static"
# Third-party scripts the page and the evaluation report share (Chart.js).
VENDOR = HERE.parent / "assets" / "vendor"
templates = Jinja2Templates(directory=HERE / "templates")

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def page(request: Request, service: ServiceDep, token: str | None = None) -> Response:
    """The page, for whoever signed in; a login URL's token signs in first."""
    if token is not None:
        return _signed_in(request, service, token)
    if not request.state.signed_in:
        return _signin_form(request, 200)
    context = {
        "csrf": service.signin.csrf(request.state.session),
        "version": __version__,
        "role": service.config.role,
        "auth": service.config.api_key is not None,
    }
    return templates.TemplateResponse(request, "page.html", context, headers=_no_store())


@router.get("/eval", response_class=HTMLResponse)
async def last_evaluation(request: Request, service: ServiceDep) -> Response:
    """The last report `ragdb eval --report` made for this store."""
    from ragdb.eval_report import last_report_path

    if not request.state.signed_in:
        return _signin_form(request, 401)
    store = (await run_in_threadpool(service.kb.status)).store
    path = last_report_path(store)
    if not path.is_file():
        context = {"version": __version__, "store": store}
        return templates.TemplateResponse(
            request, "no_eval.html", context, status_code=404, headers=_no_store()
        )
    # A report is self-contained: its script and styles are inline, and it
    # may fetch nothing.
    headers = {
        **_no_store(),
        "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
    }
    return HTMLResponse(path.read_text(encoding="utf-8"), headers=headers)


@router.post("/signin")
async def signin(request: Request, service: ServiceDep) -> Response:
    """Sign in with the API key (the form on the sign-in page)."""
    form = await request.form()
    return _signed_in(request, service, str(form.get("key") or ""))


@router.post("/signout")
async def signout() -> Response:
    """End the session (the cookie is dropped)."""
    response = RedirectResponse("/", status_code=303)
    response.headers["set-cookie"] = cookie_header("")
    return response


def _signed_in(request: Request, service: Service, token: str) -> Response:
    """To the page with a new session cookie, or the sign-in form saying why not."""
    if service.config.api_key is None:
        return RedirectResponse("/", status_code=303)
    session = service.signin.redeem(token.strip())
    if session is None:
        message = "That sign-in link or key is wrong or was already used."
        return _signin_form(request, 401, message)
    # The token leaves the address bar at once (no history, no Referer).
    response = RedirectResponse("/", status_code=303)
    response.headers["set-cookie"] = cookie_header(session, request.url.scheme == "https")
    return response


def _signin_form(request: Request, status: int, error: str = "") -> Response:
    context: dict[str, Any] = {"error": error, "version": __version__}
    return templates.TemplateResponse(
        request, "signin.html", context, status_code=status, headers=_no_store()
    )


def _no_store() -> dict[str, str]:
    # The page carries the CSRF token; frames of other sites may not hold it.
    return {
        "cache-control": "no-store",
        "x-frame-options": "DENY",
        "content-security-policy": "default-src 'self'; img-src 'self' data:; "
        "style-src 'self'; frame-ancestors 'none'",
        # Not "no-referrer": with it a browser sends "Origin: null" on form posts.
        "referrer-policy": "same-origin",
    }
