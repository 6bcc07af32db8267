"""``psymon dashboards push``: create or update psymon's dashboards in a running Grafana.

For a Grafana that does not read ``dashboards/json/`` from disk (the compose
stack provisions the files instead, and Grafana refuses API changes to
provisioned dashboards). Uses Grafana's HTTP API through ``grafana-client``:
the folder is created when missing (``POST /api/folders``), then every
dashboard is saved with ``POST /api/dashboards/db`` and ``overwrite: true``,
so pushing twice gives the same result. The token is a Grafana service-account
token with the Editor role (sent as ``Authorization: Bearer``); it is never
printed or logged.

The dashboards query the data source with uid ``psymon-timescaledb``: create it in
that Grafana first (dashboards/provisioning/datasources/psymon.yaml shows its settings).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaUnauthorizedError,
)

from dashboards.build import DASHBOARDS, render

#: Seconds to wait for Grafana to answer one request.
TIMEOUT = 10.0


class PushError(RuntimeError):
    """Grafana could not be reached or refused the dashboards; the message says what to do."""


def folder_uid(title: str) -> str:
    """The folder uid psymon uses for a folder title (lower case, at most 40 characters).

    >>> folder_uid("psymon"), folder_uid("Psychiatry Ward 3")
    ('psymon', 'psychiatry-ward-3')
    """
    uid = re.sub(r"[^a-z0-9_-]+", "-", title.strip().lower()).strip("-")[:40]
    if not uid:
        raise ValueError(
            f"folder {title!r} has no letters or digits; give a folder name such as 'psymon'"
        )
    return uid


def _shown(url: str) -> str:
    """``url`` without any user:password part, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _ensure_folder(api: GrafanaApi, title: str) -> str:
    uid = folder_uid(title)
    try:
        api.folder.get_folder(uid)  # type: ignore[no-untyped-call]
    except GrafanaClientError as error:
        if error.status_code != 404:
            raise
        api.folder.create_folder(title, uid=uid)  # type: ignore[no-untyped-call]
    return uid


def push_dashboards(
    url: str, token: str, folder: str = "psymon", *, timeout: float = TIMEOUT
) -> list[str]:
    """Create or update every psymon dashboard in the Grafana at ``url``.

    Parameters
    ----------
    url
        Grafana's base URL, e.g. ``http://localhost:3000`` (a sub-path such as
        ``https://host/grafana`` works too).
    token
        A service-account token with permission to write dashboards.
    folder
        The folder to put them in; created if missing (uid from :func:`folder_uid`).
    timeout
        Seconds to wait for each answer.

    Returns
    -------
    The URL of each dashboard, as Grafana reports it.

    Raises
    ------
    PushError
        Grafana unreachable, the token refused, or a dashboard rejected.
    """
    if not token.strip():
        raise PushError("no Grafana token given; pass a service-account token (--token)")
    if urlsplit(url).scheme not in ("http", "https"):
        raise PushError(f"Grafana URL {_shown(url)!r} must start with http:// or https://")
    where = _shown(url)
    api = GrafanaApi.from_url(url, credential=token.strip(), timeout=timeout)
    pushed = []
    try:
        uid = _ensure_folder(api, folder)
        for name, build in DASHBOARDS.items():
            doc = render(build())
            answer: dict[str, Any] = api.dashboard.update_dashboard(
                {
                    "dashboard": {**doc, "id": None},
                    "folderUid": uid,
                    "overwrite": True,
                    "message": f"psymon dashboards push: {name}",
                }
            )
            pushed.append(urljoin(where.rstrip("/") + "/", str(answer.get("url", "")).lstrip("/")))
    except GrafanaUnauthorizedError as error:
        raise PushError(
            f"Grafana at {where} refused the token ({error.status_code}); give a valid "
            "service-account token with permission to write dashboards"
        ) from None
    except GrafanaException as error:
        raise PushError(
            f"Grafana at {where} refused the dashboards ({error.status_code}): {error.message}"
        ) from None
    except OSError as error:  # grafana-client's HTTP errors (niquests) are OSErrors
        raise PushError(
            f"cannot reach Grafana at {where} ({type(error).__name__}); check the URL and "
            "that Grafana is running"
        ) from None
    return pushed
