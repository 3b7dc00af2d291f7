"""JSON forms of what the Agents SDK hands back, so the journal can replay it exactly.

A model step's output is the SDK's ``ModelResponse``: its output items as the
Responses API's JSON (``model_dump(exclude_unset=True)``, the same form the SDK
turns them into input items with, so a replayed item produces the very same next
request), its ``Usage`` as the SDK serializes it, ``response_id``, ``request_id`` and
``raw_usage``. A tool's or guardrail's value is any Python object: JSON values are
kept as they are, pydantic models by class and dump, tuples as tuples, and anything
else by its ``str()`` (what the SDK would send the model anyway).
"""

from __future__ import annotations

import importlib
from typing import Any

import pydantic
from agents.items import ModelResponse
from agents.usage import deserialize_usage, serialize_usage
from openai.types.responses import ResponseOutputItem

_OUTPUT_ITEM: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseOutputItem)
_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)
_TAGS = ("$model", "$tuple", "$str", "$dict")


def to_json(value: Any) -> Any:
    """A pydantic model or a dict/list of them as plain JSON, fields as the SDK sends them."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    return _ANY.dump_python(value, mode="json")


def encode_response(response: ModelResponse) -> dict[str, Any]:
    return {
        "output": [to_json(item) for item in response.output],
        "usage": serialize_usage(response.usage),
        "response_id": response.response_id,
        "request_id": response.request_id,
        "raw_usage": response.raw_usage,
    }


def decode_response(data: dict[str, Any]) -> ModelResponse:
    return ModelResponse(
        output=[_output_item(item) for item in data["output"]],
        usage=deserialize_usage(data.get("usage") or {}),
        response_id=data.get("response_id"),
        request_id=data.get("request_id"),
        raw_usage=data.get("raw_usage"),
    )


def _output_item(item: Any) -> Any:
    try:
        return _OUTPUT_ITEM.validate_python(item)
    except pydantic.ValidationError:
        return item  # an item type this openai version does not know: the SDK takes dicts


def encode_value(value: Any) -> Any:
    """Any value as JSON that ``decode_value`` turns back into an equal value."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, pydantic.BaseModel):
        cls = type(value)
        return {
            "$model": f"{cls.__module__}:{cls.__qualname__}",
            "data": value.model_dump(mode="json", exclude_unset=True),
        }
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode_value(v) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        encoded = {k: encode_value(v) for k, v in value.items()}
        return {"$dict": encoded} if any(k in _TAGS for k in value) else encoded
    return {"$str": str(value)}


def decode_value(data: Any) -> Any:
    if isinstance(data, list):
        return [decode_value(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$model" in data:
        return _model_class(data["$model"]).model_validate(data["data"])
    if "$tuple" in data:
        return tuple(decode_value(v) for v in data["$tuple"])
    if "$str" in data:
        return data["$str"]
    if "$dict" in data:
        return {k: decode_value(v) for k, v in data["$dict"].items()}
    return {k: decode_value(v) for k, v in data.items()}


def _model_class(path: str) -> type[pydantic.BaseModel]:
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, pydantic.BaseModel)):
        raise TypeError(f"{path} is not a pydantic model")
    return obj
