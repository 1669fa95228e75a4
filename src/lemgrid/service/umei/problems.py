"""UMEI errors as RFC 7807 problem details: one exception, :class:`Problem`, raised anywhere under
``/umei`` and answered as ``application/problem+json`` whose ``type`` ends in the error code and
whose ``validation-errors`` name the field at fault."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError as PydanticError

from lemgrid.service.umei.models import ProblemDetails, ValidationError

TYPE_BASE = "https://umei.org/error-codes/"

#: Error code -> (HTTP status, title). Each title is fixed per code (RFC 7807 section 3.1).
CODES: dict[str, tuple[int, str]] = {
    "ValidationError": (400, "The request does not follow the UMEI schema"),
    "InvalidOrder": (400, "The order is not valid for this market"),
    "InvalidMarket": (400, "The market id is not found or not valid for this operation"),
    "InvalidPortfolio": (400, "The portfolio id is not found or not valid for this operation"),
    "InvalidGridNode": (400, "The grid node id is not found or not valid for this operation"),
    "InvalidFlexibilityZone": (400, "The flexibility zone id is not found or not valid for "
                                    "this operation"),
    "InconsistentPeriods": (400, "The period is not one delivery interval of this market"),
    "InvalidBaseline": (400, "The baseline interval is not valid"),
    "InvalidMeterReading": (400, "The meter reading is not valid"),
    "InvalidQuery": (400, "A search parameter is not valid"),
    "Unauthenticated": (401, "Lack of valid authentication credentials"),
    "Forbidden": (403, "Insufficient rights to the resource"),
    "ResourceNotFound": (404, "The resource is not found"),
    "EndpointNotSupported": (405, "The market platform does not support this endpoint"),
    "Conflict": (409, "The request conflicts with the market's state"),
}


class Problem(Exception):
    """A UMEI error.

    Parameters
    ----------
    code : str
        A key of :data:`CODES`.
    detail : str
        What went wrong in this request (names the field).
    field : str, optional
        The JSON path of the property at fault (``pricePoints[0].quantity``).
    value : object, optional
        The value received for it.
    """

    def __init__(self, code: str, detail: str, field: str | None = None,
                 value: Any = None, errors: list[ValidationError] | None = None) -> None:
        super().__init__(detail)
        if code not in CODES:
            raise ValueError(f"code: {code!r} is not a UMEI error code lemgrid answers")
        self.code, self.detail = code, detail
        self.errors = errors if errors is not None else (
            [ValidationError(property=field, message=detail,
                             value=None if value is None else _text(value))]
            if field is not None else None)

    @property
    def status(self) -> int:
        return CODES[self.code][0]

    def body(self, instance: str | None = None) -> dict:
        return ProblemDetails(type=TYPE_BASE + self.code, title=CODES[self.code][1],
                              status=str(self.status), detail=self.detail, instance=instance,
                              validation_errors=self.errors
                              ).model_dump(by_alias=True, exclude_none=True)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value[:200]
    try:
        return json.dumps(value, allow_nan=False)[:200]
    except (TypeError, ValueError):
        return repr(value)[:200]


def json_path(loc: tuple) -> str:
    """A pydantic error location as a JSON path (``pricePoints[0].unitPrice``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def from_pydantic(exc: PydanticError, code: str = "ValidationError") -> Problem:
    """A 400 naming every property pydantic refused."""
    errors = [ValidationError(property=json_path(e["loc"]), message=e["msg"],
                              value=None if "input" not in e or isinstance(e["input"], dict)
                              else _text(e["input"]))
              for e in exc.errors()]
    first = errors[0]
    return Problem(code, f"{first.property}: {first.message}" + (
        f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""), errors=errors)


def response(request: Request, exc: Problem) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="umei"'} if exc.status == 401 else None
    return JSONResponse(exc.body(str(request.url.path)), status_code=exc.status,
                        media_type="application/problem+json", headers=headers)
