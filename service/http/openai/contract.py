"""The OpenAI and tokenizer routes in the published OpenAPI document (``service.http.openapi``).

BentoML documents only its own API methods; these routes are ours, so
their paths and schemas are written here from the same pydantic models
that validate the requests, in OpenAPI 3.0 form.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service.http.openai.schemas import TOKEN_ID_MARK, CompletionRequest, DetokenizeRequest, TokenizeRequest
from service.http.openapi import SSE_EVENT, error_response, to_openapi_30

REF = "#/components/schemas/{model}"
OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "description": "invalid_request_error, authentication_error, ..."},
                "param": {"type": "string", "nullable": True, "description": "The request field at fault."},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}
OPENAI_ERRORS = {
    "400": "Invalid input; error.param names the field.",
    "401": "An API key is set and the request's is missing or wrong.",
    "404": "The model is not the one served.",
    "413": "The body is larger than NEXTWORD_MAX_BODY_BYTES.",
    "415": "The body is not application/json.",
    "429": "Too many requests in flight, or more queued generation than can finish in time; see Retry-After.",
    "500": "An error of the server's own.",
    "503": "Not ready yet: the model is loading.",
    "504": "No answer started within NEXTWORD_TIMEOUT_S.",
}
TOKEN_LOGPROBS = {
    "type": "object",
    "nullable": True,
    "properties": {
        "tokens": {"type": "array", "items": {"type": "string"}},
        "token_logprobs": {"type": "array", "items": {"type": "number", "nullable": True}},
        "top_logprobs": {
            "type": "array",
            "items": {"type": "object", "nullable": True, "additionalProperties": {"type": "number"}},
        },
        "text_offset": {"type": "array", "items": {"type": "integer"}},
    },
}
COMPLETION = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["text_completion"]},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "text", "finish_reason", "logprobs"],
                "properties": {
                    "index": {"type": "integer"},
                    "text": {"type": "string"},
                    "finish_reason": {"type": "string", "enum": ["stop", "length"], "nullable": True},
                    "logprobs": TOKEN_LOGPROBS,
                    "truncated": {
                        "type": "boolean",
                        "description": "Only with truncate_prompt_tokens: tokens of the prompt were left out.",
                    },
                },
            },
        },
        "usage": {
            "type": "object",
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "completion_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
            },
        },
    },
}
MODEL = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": {"type": "string", "description": "The model's tag in the BentoML store."},
        "object": {"type": "string", "enum": ["model"]},
        "created": {"type": "integer"},
        "owned_by": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": True, "description": "The model's training record."},
    },
}


def openai_contract(vocabulary: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The paths and the component schemas of the /v1 and tokenizer routes; token ids below
    ``vocabulary``, the served model's, once it is known."""
    schemas: dict[str, Any] = {"OpenAIError": OPENAI_ERROR, "Completion": COMPLETION, "Model": MODEL}
    for model in (CompletionRequest, TokenizeRequest, DetokenizeRequest):
        schemas.update(bound_token_ids(component(model), vocabulary))
    paths = {
        "/v1/completions": {
            "post": operation(
                "Complete or score prompts (OpenAI's legacy completions API).",
                "CompletionRequest",
                {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Completion"}},
                    "text/event-stream": {"schema": SSE_EVENT},
                },
                openai_errors(),
            )
        },
        "/v1/models": {
            "get": {
                "summary": "The served model.",
                "responses": {
                    "200": ok(
                        {
                            "type": "object",
                            "required": ["object", "data"],
                            "properties": {
                                "object": {"type": "string", "enum": ["list"]},
                                "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
                            },
                        }
                    ),
                    **openai_errors(("401", "500", "503")),
                },
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "The served model, by its tag or name.",
                "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": ok({"$ref": "#/components/schemas/Model"}),
                    **openai_errors(("401", "404", "500", "503")),
                },
            }
        },
        "/tokenize": {
            "post": operation(
                "Text to token ids, as the model reads it (vLLM's route, for lm-evaluation-harness).",
                "TokenizeRequest",
                {"application/json": {"schema": object_of(count="integer", max_model_len="integer", tokens="ids")}},
                our_errors(),
            )
        },
        "/detokenize": {
            "post": operation(
                "Token ids to text.",
                "DetokenizeRequest",
                {"application/json": {"schema": object_of(prompt="string")}},
                our_errors(),
            )
        },
        "/tokenizer_info": {
            "get": {
                "summary": "The tokenizer's special tokens and settings (vLLM's route).",
                "responses": {"200": ok({"type": "object", "additionalProperties": True}), **our_errors(("401",))},
            }
        },
    }
    return paths, schemas


def bound_token_ids(schema: Any, vocabulary: int | None) -> Any:
    """``schema`` with each token id (marked in ``service.http.openai.schemas``) below ``vocabulary``."""
    if isinstance(schema, list):
        return [bound_token_ids(item, vocabulary) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: bound_token_ids(value, vocabulary) for key, value in schema.items() if key != TOKEN_ID_MARK}
    if schema.get(TOKEN_ID_MARK) and vocabulary is not None:
        out["maximum"] = vocabulary - 1
    return out


def component(model: type[BaseModel]) -> dict[str, Any]:
    """A request model and the models it uses, as OpenAPI 3.0 component schemas."""
    schema = model.model_json_schema(ref_template=REF)
    nested = schema.pop("$defs", {})
    return {model.__name__: to_openapi_30(schema)} | {name: to_openapi_30(s) for name, s in nested.items()}


def operation(summary: str, request: str, content: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}},
        },
        "responses": {"200": {"description": "OK", "content": content}, **errors},
    }


def ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def object_of(**fields: str) -> dict[str, Any]:
    kinds = {"ids": {"type": "array", "items": {"type": "integer"}}}
    return {
        "type": "object",
        "required": list(fields),
        "properties": {name: kinds.get(kind, {"type": kind}) for name, kind in fields.items()},
    }


def openai_errors(statuses: tuple[str, ...] | None = None) -> dict[str, Any]:
    chosen = statuses or tuple(OPENAI_ERRORS)
    return {
        status: {
            "description": OPENAI_ERRORS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}},
            **({"headers": error_response(status, "")["headers"]} if status == "429" else {}),
        }
        for status in chosen
    }


def our_errors(statuses: tuple[str, ...] = ("400", "401", "413", "415", "500", "503", "504")) -> dict[str, Any]:
    return {status: error_response(status, OPENAI_ERRORS[status]) for status in statuses}
