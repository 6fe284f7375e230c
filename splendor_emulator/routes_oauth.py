"""The emulator's stand-in for a provider's OAuth consent screen (not part of the Splendor API).

`GET {consent_url}` shows an approval page; `GET {consent_url}?approve=true[&redirect_uri=URL]` approves and
redirects (302) to `redirect_uri`, or to `/_emulator/oauth/done`, with `?secret_id=...&state=...` (Airbyte-run
OAuth) or `?status=ready&state=...` (Splendor-run OAuth, where credentials become ready at once).
"""

import html
from typing import Annotated
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from splendor_emulator import connectors
from splendor_emulator.auth import runtime_of
from splendor_emulator.errors import ApiError
from splendor_emulator.store import OAuthStateRec, SourceRec

router = APIRouter(prefix="/_emulator/oauth", include_in_schema=False)

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


@router.get("/consent/{state}")
async def consent(
    request: Request,
    state: str,
    approve: bool | None = None,
    redirect_uri: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    rt = runtime_of(request)
    if redirect_uri is not None and urlsplit(redirect_uri).scheme not in ("http", "https"):
        raise ApiError(400, "redirect_uri must be an http(s) URL")
    if approve is None:
        rec = rt.store.get(OAuthStateRec, state)
        if rec is None:
            return _page("Unknown consent request", "<h1>Unknown or expired consent request</h1>", 404)
        src = rt.store.get(SourceRec, rec.source_id)
        provider = src.airbyte.source_definition_name if src is not None and src.airbyte else "the provider"
        extra = {"redirect_uri": redirect_uri} if redirect_uri else {}
        yes = html.escape(f"?{urlencode({'approve': 'true', **extra})}")
        no = html.escape(f"?{urlencode({'approve': 'false', **extra})}")
        body = (
            f"<h1>Authorize Splendor to read your {html.escape(provider)} data</h1>"
            f"<p>Tenant <code>{html.escape(rec.tenant_id)}</code>, source id {rec.source_id} "
            f"(OAuth run by {'Airbyte' if rec.mode == 'airbyte' else 'Splendor'}).</p>"
            f'<p><a id="approve" href="{yes}">Approve</a> &nbsp; <a id="deny" href="{no}">Deny</a></p>'
        )
        return _page("Consent", body)
    _, params = connectors.approve_consent(rt, state, approve)
    target = redirect_uri or str(request.url_for("oauth_done"))
    return RedirectResponse(_with_query(target, params), status_code=302)


@router.get("/done", name="oauth_done")
async def done(
    request: Request,
    secret_id: str | None = None,
    state: str | None = None,
    status: str | None = None,
    error: str | None = None,
) -> Response:
    payload = {
        "secret_id": secret_id,
        "state": state,
        "status": status or ("denied" if error else "approved"),
    }
    if error:
        payload["error"] = error
    if _wants_json(request):
        return JSONResponse(payload)
    if error:
        return _page("Consent denied", "<h1>Consent was denied</h1>")
    if secret_id:
        body = (
            "<h1>Connected</h1><p>Finish with "
            "<code>POST /v1/admin/airbyte-sources/{id}/oauth/complete</code> "
            f'and this secret id:</p><p><code id="secret_id">{html.escape(secret_id)}</code></p>'
        )
    else:
        body = "<h1>Connected</h1><p>Credentials are ready; no further step is needed.</p>"
    return _page("Connected", body)
