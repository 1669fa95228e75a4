"""Shared by the UMEI tests: the example FSP client, the specification (read at test time from
outside the repository; never copied into it) and a checker of responses against it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/umei"


def problem(r, status: int, code: str, field: str | None = None) -> dict:
    """The problem details of a refused UMEI call: its status, its error code and the field at
    fault (named in the detail and first in ``validation-errors``)."""
    from lemgrid.service.umei.problems import TYPE_BASE

    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == TYPE_BASE + code, body
    if field is not None:
        assert field in body["detail"], body
        assert [e["property"] for e in body["validation-errors"]][0] == field, body
    return body


def fsp_client_module():
    """``examples/umei_fsp_client.py`` as a module."""
    spec = importlib.util.spec_from_file_location("umei_fsp_client",
                                                  ROOT / "examples" / "umei_fsp_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spec_path() -> Path | None:
    """``$LEMGRID_UMEI_SPEC`` when set, else ``<repo>/../shared/umei/umei-openapi.json`` or
    ``/work/shared/umei/umei-openapi.json``; None when the file is not there."""
    env = os.environ.get("LEMGRID_UMEI_SPEC")
    candidates = [Path(env)] if env else [  # an explicit path alone, when given
        ROOT.parent / "shared" / "umei" / "umei-openapi.json",
        Path("/work/shared/umei/umei-openapi.json")]
    return next((p for p in candidates if p.is_file()), None)


def require_spec() -> Path:
    path = spec_path()
    if path is None:
        pytest.skip("the UMEI specification is not here: set LEMGRID_UMEI_SPEC to "
                    "umei-openapi.json (github.com/euniversal/umei-api-specification); it is "
                    "not shipped with lemgrid")
    return path


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema: ``nullable: true`` becomes a null type."""
    if isinstance(node, list):
        return [_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
    return out


class SpecChecker:
    """Validates a response against the specification's schema for its path, method and status.

    A 4xx status the specification does not list for an operation (lemgrid's 400 on a bad search
    parameter) is checked against its ``ProblemDetails`` schema, and counted in
    :attr:`unlisted`.
    """

    def __init__(self, path: Path) -> None:
        import jsonschema_rs

        self.spec = json.loads(path.read_text())
        self.components = _json_schema(self.spec["components"])
        self.routes = [(re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", p) + "$"), p)
                       for p in self.spec["paths"]]
        self._validators: dict[str, Any] = {}
        self._factory = jsonschema_rs.Draft202012Validator
        self.checked: set[tuple[str, str, int]] = set()
        self.unlisted: set[tuple[str, str, int]] = set()

    def template(self, path: str) -> str | None:
        bare = path.split("?")[0].removeprefix(PREFIX)
        # a literal path wins over a templated one (/MeterReadings/import over /{id})
        literal = [p for rx, p in self.routes if rx.match(bare) and "{" not in p]
        matched = literal or [p for rx, p in self.routes if rx.match(bare)]
        return matched[0] if matched else None

    def _validator(self, ref: str):
        if ref not in self._validators:
            self._validators[ref] = self._factory(
                {"$ref": ref, "components": self.components}, validate_formats=True)
        return self._validators[ref]

    def check(self, method: str, path: str, status: int, content_type: str, body: Any) -> None:
        """Raise AssertionError when the response does not conform."""
        template = self.template(path)
        assert template is not None, f"{path} is not a UMEI path"
        operation = self.spec["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not a UMEI operation"
        response = operation["responses"].get(str(status))
        if response is None:
            assert 400 <= status < 500, f"{method} {template}: status {status} is not listed"
            self.unlisted.add((method, template, status))
            response = self.spec["components"]["responses"]["ValidationError"]
        if "$ref" in response:
            response = self.spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        self.checked.add((method, template, status))
        content = response.get("content")
        if not content:
            assert body in (None, b"", ""), f"{method} {template} {status}: body expected empty"
            return
        media = content_type.split(";")[0].strip()
        assert media in content, (f"{method} {template} {status}: content type {media!r}, "
                                  f"expected one of {list(content)}")
        ref = content[media]["schema"]["$ref"]
        errors = [f"{e.instance_path}: {e.message}"
                  for e in self._validator(ref).iter_errors(body)]
        assert not errors, f"{method} {template} {status}: {errors[:5]}"


@cache
def checker() -> SpecChecker | None:
    path = spec_path()
    return SpecChecker(path) if path is not None else None
