"""Built-in web views: the cohort, a patient's course, the alert inbox.

Plain server-rendered pages (Jinja2, autoescaped) for the embedded default,
so that no Grafana is needed. One charting library, plotly.js, is served from
the installed ``plotly`` Python package (``/static/plotly.min.js``): no build
step, nothing fetched from the internet.

Signing in: the login form takes an API token and keeps it in an HttpOnly,
SameSite=Strict cookie (``Secure`` over HTTPS); a bearer header works too.
Every POST form carries a CSRF token (:func:`services.api.guards.csrf_token`).
Researchers see the pages read-only, with notes and actors' names withheld.
"""

from __future__ import annotations

import functools
import hmac
import importlib.util
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID

import jinja2
from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.api.alert_store import (
    ActionRefused,
    AlertFilter,
    AlertNotFound,
    AlertStore,
    AlertView,
    HistoryEntry,
)
from services.api.alert_workflow import ACTIONS, Action, decide
from services.api.alerts import PATIENT_PATTERN, alert_store
from services.api.charts import SEVERITY_COLOURS, patient_charts
from services.api.guards import (
    SESSION_COOKIE,
    LoginRequired,
    WebActor,
    WebForbidden,
    WebReader,
    WebSession,
    web_session,
)
from services.api.patient_reader import PatientNotFound, PatientReader
from services.api.patients import patient_reader

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
#: How long a web session lasts before the login form is shown again.
SESSION_SECONDS = 8 * 3600
_LOGIN_COOKIE = "psymon_login"
#: The alert statuses the inbox shows by default: those that still need someone.
ACTIVE = ("open", "acknowledged", "escalated")

router = APIRouter(include_in_schema=False)


def _when(moment: datetime | None) -> str:
    """``2026-03-02 09:00 UTC``; an em dash for nothing."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(moment: datetime | None) -> str:
    """How long ago, roughly: ``3 h ago``, ``12 d ago``."""
    if moment is None:
        return ""
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["percent"] = _percent
    env.globals["severity_colours"] = SEVERITY_COLOURS
    return env


templates = Jinja2Templates(env=_environment())


def _page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: WebSession | None,
    status_code: int = 200,
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {"session": session, "path": request.url.path, **context},
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _local(target: str | None, default: str = "/cohort") -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirects).

    >>> _local("/alerts?status=open"), _local("//evil.example/"), _local("https://x.org")
    ('/alerts?status=open', '/cohort', '/cohort')
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


# --------------------------------------------------------------------------- sign in


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/cohort", failed: bool = False) -> HTMLResponse:
    """The login form: paste an API token."""
    nonce = secrets.token_urlsafe(24)
    response = _page(
        request,
        "login.html",
        {"next": _local(next), "nonce": nonce, "failed": failed},
        session=None,
        status_code=401 if failed else 200,
    )
    response.set_cookie(
        _LOGIN_COOKIE,
        nonce,
        max_age=900,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=512)],
    nonce: Annotated[str, Form(max_length=128)],
    next: Annotated[str, Form(max_length=2048)] = "/cohort",
) -> Response:
    """Check the token; on success keep it in the session cookie and go to ``next``."""
    expected = request.cookies.get(_LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, nonce):
        return RedirectResponse(
            "/login?" + urlencode({"next": _local(next)}), status.HTTP_303_SEE_OTHER
        )
    principal = request.app.state.tokens.authenticate(token.strip())
    if principal is None:
        return RedirectResponse(
            "/login?" + urlencode({"next": _local(next), "failed": "true"}),
            status.HTTP_303_SEE_OTHER,
        )
    response = RedirectResponse(_local(next), status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE,
        token.strip(),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(_LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    session: Annotated[WebSession, Depends(web_session)],
    csrf: Annotated[str, Form(max_length=128)],
) -> Response:
    """Forget the session cookie."""
    _check_csrf(session, csrf)
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _check_csrf(session: WebSession, submitted: str) -> None:
    if not hmac.compare_digest(session.csrf, submitted):
        raise WebForbidden(
            "This form did not come from this psymon page, or it has expired. "
            "Reload the page and try again."
        )


# --------------------------------------------------------------------------- pages


@router.get("/")
def home(session: WebReader) -> Response:
    """The cohort is the start page."""
    return RedirectResponse("/cohort", status.HTTP_303_SEE_OTHER)


@router.get("/cohort", response_class=HTMLResponse)
def cohort_page(
    request: Request,
    session: WebReader,
    reader: Annotated[PatientReader, Depends(patient_reader)],
) -> HTMLResponse:
    """Every patient, highest relapse risk first."""
    return _page(request, "cohort.html", {"rows": reader.cohort()}, session=session)


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient_page(
    request: Request,
    patient_id: str,
    session: WebReader,
    reader: Annotated[PatientReader, Depends(patient_reader)],
    days: Annotated[int, Query(ge=7, le=3650)] = 365,
) -> HTMLResponse:
    """One patient: risk with alerts, scores with bands, labs, wearable features, alerts."""
    if not re.fullmatch(PATIENT_PATTERN, patient_id):
        return _not_found(request, session, "That is not a psymon pseudonym.")
    try:
        record = reader.patient(patient_id, days=days)
    except PatientNotFound:
        return _not_found(request, session, "No patient with this pseudonym.")
    role = session.principal.role
    alerts = [a.for_role(role) for a in reversed(record.alerts)]
    context = {
        "record": record,
        "charts": patient_charts(record),
        "alerts": alerts,
        "actions": {a.alert_id: _allowed_actions(a) for a in alerts},
        "form_key": secrets.token_urlsafe(16),
        "days": days,
        "here": f"/patients/{patient_id}?days={days}",
    }
    return _page(request, "patient.html", context, session=session)


@router.get("/alerts", response_class=HTMLResponse)
def inbox_page(
    request: Request,
    session: WebReader,
    store: Annotated[AlertStore, Depends(alert_store)],
    show: Annotated[str, Query(pattern="^(active|all|resolved|closed)$")] = "active",
    severity: Annotated[str | None, Query(pattern="^(info|warning|urgent)$")] = None,
) -> HTMLResponse:
    """The alert inbox: active alerts, most severe first, with their actions."""
    statuses = {"active": ACTIVE, "all": (), "resolved": ("resolved",), "closed": ("closed",)}
    found = store.find(
        AlertFilter(statuses=statuses[show], severities=(severity,) if severity else (), limit=500)
    )
    role = session.principal.role
    alerts = [a.for_role(role) for a in found]
    here = "/alerts?" + urlencode({"show": show, **({"severity": severity} if severity else {})})
    context = {
        "alerts": alerts,
        "actions": {a.alert_id: _allowed_actions(a) for a in alerts},
        "form_key": secrets.token_urlsafe(16),
        "show": show,
        "severity": severity,
        "here": here,
    }
    return _page(request, "alerts.html", context, session=session)


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(
    request: Request,
    alert_id: UUID,
    session: WebReader,
    store: Annotated[AlertStore, Depends(alert_store)],
) -> HTMLResponse:
    """One alert with its full history."""
    try:
        detail = store.get(alert_id).for_role(session.principal.role)
    except AlertNotFound:
        return _not_found(request, session, "No such alert.")
    history: list[HistoryEntry] = detail.history
    context = {
        "alert": detail,
        "history": history,
        "actions": {detail.alert_id: _allowed_actions(detail)},
        "form_key": secrets.token_urlsafe(16),
        "here": f"/alerts/{alert_id}",
    }
    return _page(request, "alert.html", context, session=session)


@router.post("/alerts/{alert_id}/action")
def alert_action(
    request: Request,
    alert_id: UUID,
    session: WebActor,
    store: Annotated[AlertStore, Depends(alert_store)],
    action: Annotated[str, Form(pattern="^(acknowledge|escalate|resolve|note)$")],
    csrf: Annotated[str, Form(max_length=128)],
    note: Annotated[str, Form(max_length=2000)] = "",
    key: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/alerts",
) -> Response:
    """A button of the inbox or the patient page: act on the alert, then go back."""
    _check_csrf(session, csrf)
    chosen = _as_action(action)
    text = note.strip() or None
    if chosen == "note" and text is None:
        return _problem(request, session, 422, "Write the note first, then press “Add note”.", next)
    try:
        store.act(alert_id, chosen, session.principal, note=text, key=key or None)
    except AlertNotFound:
        return _not_found(request, session, "No such alert.")
    except ActionRefused as refused:
        return _problem(request, session, 409, f"Not done: {refused}.", next)
    return RedirectResponse(_local(next, "/alerts"), status.HTTP_303_SEE_OTHER)


def _as_action(name: str) -> Action:
    """The :data:`Action` named ``name`` (the form's pattern admits only these)."""
    for action in ACTIONS:
        if action == name:
            return action
    raise ValueError(f"action {name!r} is not one of {', '.join(ACTIONS)}")


_BUTTONS: tuple[Action, ...] = ("acknowledge", "escalate", "resolve")


def _allowed_actions(alert: AlertView) -> list[Action]:
    """The buttons an alert gets: the actions that would change it."""
    return [a for a in _BUTTONS if decide(alert.status, a).outcome == "apply"]


def _not_found(request: Request, session: WebSession | None, message: str) -> HTMLResponse:
    return _problem(request, session, 404, message, "/cohort")


def _problem(
    request: Request, session: WebSession | None, code: int, message: str, back: str
) -> HTMLResponse:
    return _page(
        request,
        "problem.html",
        {"message": message, "back": _local(back)},
        session=session,
        status_code=code,
    )


# --------------------------------------------------------------------------- static


@functools.cache
def plotly_js_path() -> Path:
    """``plotly.min.js`` inside the installed ``plotly`` package (found, not imported)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the web views need the package plotly for their charts (pip install 'plotly>=6')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    """plotly.js, exactly as the installed plotly package ships it."""
    return FileResponse(
        plotly_js_path(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """psymon's own CSS and JavaScript (a fixed list; nothing else is served)."""
    media = {"psymon.css": "text/css", "charts.js": "text/javascript"}
    if name not in media:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        STATIC_DIR / name, media_type=media[name], headers={"Cache-Control": "no-cache"}
    )


# --------------------------------------------------------------------------- errors


def login_required(request: Request, error: LoginRequired) -> Response:
    """No session: pages redirect to the login form; form posts get 401."""
    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?next=" + quote(target, safe=""), status.HTTP_303_SEE_OTHER)
    return _problem(request, None, 401, "Sign in first (your session has ended).", "/login")


def forbidden(request: Request, error: WebForbidden) -> Response:
    """A session whose role may not do this."""
    return _problem(request, None, 403, error.message, "/cohort")
