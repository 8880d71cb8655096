"""The OpenAPI document: the static routes plus one predict operation per served model,
generated from that model's request schema (rebuilt when a model is swapped)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI

from serving.http_errors import ErrorBody
from serving.state import ServingState


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    state: ServingState = app.state.serving
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    header = state.settings.api_key_header
    components["securitySchemes"] = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": header, "description": "prediction and feedback key"},
        "AdminKey": {"type": "apiKey", "in": "header", "name": header, "description": "admin key"},
    }
    for path, scheme in (("/v1/feedback", "ApiKey"), ("/v1/models", "ApiKey"), ("/admin/reload", "AdminKey")):
        for op in schema.get("paths", {}).get(path, {}).values():
            op["security"] = [{scheme: []}]
    for model_cls in (ErrorBody,):
        js = model_cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, d in js.pop("$defs", {}).items():
            schemas.setdefault(def_name, d)
        schemas[model_cls.__name__] = js
    for name, model in state.holder.models().items():
        record = model.schema.record_json_schema()
        record_name = record.get("title", "Record")
        schemas[record_name] = record
        ref = {"$ref": f"#/components/schemas/{record_name}"}
        body_schema = {
            "oneOf": [
                ref,
                {"type": "array", "items": ref, "minItems": 1, "maxItems": state.settings.max_batch_rows},
            ]
        }
        answer = model.answer_model
        response_ref: dict[str, Any] = {"type": "object"}
        if answer is not None:
            js = answer.model_json_schema(ref_template="#/components/schemas/{model}")
            for def_name, d in js.pop("$defs", {}).items():
                schemas.setdefault(def_name, d)
            schemas[answer.__name__] = js
            response_ref = {
                "type": "object",
                "required": ["predictions"],
                "properties": {"predictions": {"type": "array", "items": {"$ref": f"#/components/schemas/{answer.__name__}"}}},
            }
        err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        op = {
            "tags": ["predictions"],
            "summary": f"score one {name} record or a list of them (v{model.version})",
            "operationId": f"predict_{quote(name, safe='')}",
            "security": [{"ApiKey": []}],
            "parameters": [{
                "name": "explain", "in": "query", "required": False,
                "schema": {"type": "boolean", "default": True},
                "description": "false: answers without explanations (credit: empty reason_codes), computed faster",
            }],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema, "example": model.schema.example}},
            },
            "responses": {
                "200": {
                    "description": "one answer per record, in order",
                    "content": {"application/json": {"schema": response_ref}},
                },
                "400": {"description": "malformed JSON", **err},
                "401": {"description": "no API key", **err},
                "403": {"description": "wrong API key", **err},
                "413": {"description": "too many records or bytes", **err},
                "415": {"description": "the body is not declared as application/json", **err},
                "422": {"description": "records break the schema; errors lists each field", **err},
                "503": {"description": "model not loaded or prediction log full", **err},
            },
        }
        schema.setdefault("paths", {})[f"/v1/models/{quote(name, safe='')}/predict"] = {"post": op}
    app.openapi_schema = schema
    return schema


