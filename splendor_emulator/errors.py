"""Error responses in the documented shapes (§2.3): a string `detail`, a structured `{code, message}`
detail, or FastAPI's 422 array."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """Raised by handlers and domain code; turned into `{"detail": ...}` with the given status."""

    def __init__(
        self, status: int, detail: str | dict[str, Any] | list[Any], headers: dict[str, str] | None = None
    ):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers


def conflict(code: str, message: str, **extra: Any) -> ApiError:
    return ApiError(409, {"code": code, "message": message, **extra})


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def invalid(loc: list[str | int], msg: str, kind: str = "value_error") -> ApiError:
    """A 422 in FastAPI's array shape, for checks a pydantic model cannot express (JSON-Schema, single-use
    ids)."""
    return ApiError(422, [{"loc": loc, "msg": msg, "type": kind}])


# Provision bodies carry connector secrets; the 422 shape normally echoes the offending `input`, so on those
# routes it is dropped. Matching on the path keeps the rule in one place.
_SECRET_BEARING_SUFFIXES = ("/provision", "/oauth/complete")


# Write-only fields that may sit in an echoed request body.
_WRITE_ONLY_FIELDS = frozenset(("external_id",))


def _redact(errors: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    if path.endswith(_SECRET_BEARING_SUFFIXES):
        return [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in errors]
    for error in errors:
        echoed = error.get("input")
        if isinstance(echoed, dict) and _WRITE_ONLY_FIELDS & echoed.keys():
            error["input"] = {k: ("**********" if k in _WRITE_ONLY_FIELDS else v) for k, v in echoed.items()}
        if error.get("loc", [None])[-1] in _WRITE_ONLY_FIELDS:
            error.pop("input", None)
    return errors


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        item = dict(err)
        ctx = item.get("ctx")
        if isinstance(ctx, dict):
            item["ctx"] = {
                k: (v if isinstance(v, str | int | float | bool | None) else str(v)) for k, v in ctx.items()
            }
        if "input" in item and isinstance(item["input"], bytes):
            item["input"] = item["input"].decode("utf-8", "replace")
        item.pop("url", None)
        out.append(item)
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _redact(_jsonable_errors(exc.errors()), request.url.path)
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
