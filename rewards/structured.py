"""JSON rewards: the completion holds valid JSON, and that JSON validates against a JSON Schema.

The JSON is looked for in a fenced ```json block first, then the whole completion, then the span from the first
`{` or `[` to the last matching `}` or `]` (models like to add a sentence around their JSON). NaN and Infinity,
which Python's `json` accepts but JSON does not, are refused.
"""
from __future__ import annotations

import json
import re
from typing import Any

from rewards.base import Reward, column

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|jsonc)?[ \t]*\n(.*?)```", re.DOTALL)
_NO_VALUE = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def extract_json(text: str, extract: bool = True) -> Any:
    """The JSON value in a completion, or `_NO_VALUE` (a sentinel) when there is none.

    >>> extract_json('Here you go:\\n```json\\n{"a": 1}\\n```')
    {'a': 1}
    >>> extract_json('Sure: {"a": [1, 2]} Hope this helps!')
    {'a': [1, 2]}
    >>> extract_json('{"a": NaN}') is _NO_VALUE
    True
    """
    candidates = []
    if extract:
        candidates += [m.group(1) for m in reversed(list(_FENCE.finditer(text)))]
    candidates.append(text.strip())
    if extract:
        for open_ch, close_ch in (("{", "}"), ("[", "]")):
            start, end = text.find(open_ch), text.rfind(close_ch)
            if 0 <= start < end:
                candidates.append(text[start : end + 1])
    for cand in candidates:
        if not cand.strip():
            continue
        try:
            return _loads(cand)
        except (ValueError, RecursionError):
            continue
    return _NO_VALUE


class JsonValid(Reward):
    """Scores whether the completion holds valid JSON (see `make_json_valid`)."""

    kind = "json_valid"
    param_names = ("extract", "require_object")

    def __init__(self, extract: bool = True, require_object: bool = False, name: str | None = None):
        super().__init__(name)
        self.extract, self.require_object = bool(extract), bool(require_object)

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        out: list[float | None] = []
        for text in texts:
            value = extract_json(text, self.extract)
            ok = value is not _NO_VALUE and (not self.require_object or isinstance(value, dict))
            out.append(1.0 if ok else 0.0)
        return out


def make_json_valid(extract: bool = True, require_object: bool = False, name: str | None = None) -> JsonValid:
    """Reward for producing valid JSON: 1.0 if the completion holds a JSON value, else 0.0.

    Args:
        extract: look inside ```json fences and around surrounding prose; False requires the whole completion
            to be JSON.
        require_object: only a JSON object (`{...}`) counts.
        name: `__name__` of the reward; default "json_valid".

    Returns:
        A reward `f(completions, **columns) -> list[float]`.

    >>> reward = make_json_valid()
    >>> reward(['{"name": "Ada"}', 'Sure! {"name": "Ada"}', "{name: Ada}", ""])
    [1.0, 1.0, 0.0, 0.0]
    >>> make_json_valid(extract=False)(['Sure! {"name": "Ada"}'])
    [0.0]
    """
    return JsonValid(extract, require_object, name)


def _load_schema(schema: Any, where: str) -> dict:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ValueError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"{where} must be a JSON Schema (an object), got {type(schema).__name__}")
    return schema


class JsonSchema(Reward):
    """Scores whether the completion's JSON validates against a JSON Schema (see `make_json_schema`)."""

    kind = "json_schema"
    param_names = ("schema", "schema_column", "extract")

    def __init__(self, schema: dict | str | None = None, schema_column: str = "schema", extract: bool = True,
                 name: str | None = None):
        super().__init__(name)
        self.schema = None if schema is None else _load_schema(schema, "parameter 'schema'")
        if self.schema is not None:
            self._validator(self.schema, "parameter 'schema'")  # a broken schema fails now, not mid-run
        self.schema_column, self.extract = schema_column, bool(extract)
        self._cache: dict[str, Any] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}  # validators are rebuilt on demand
        return state

    @staticmethod
    def _validator(schema: Any, where: str) -> Any:
        import jsonschema
        from jsonschema.validators import validator_for

        cls = validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"{where} is not a valid JSON Schema: {exc.message}") from None
        return cls(schema)

    def _get_validator(self, schema: Any) -> Any:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._cache:
            self._cache[key] = self._validator(schema, f"the schema in column {self.schema_column!r}")
        return self._cache[key]

    def score_texts(self, texts: list[str], kwargs: dict[str, Any]) -> list[float | None]:
        if self.schema is not None:
            schemas: list[Any] = [self.schema] * len(texts)
        else:
            schemas = column(kwargs, self.schema_column, len(texts), self.__name__, "schema_column")
        out: list[float | None] = []
        for text, schema in zip(texts, schemas):
            if schema is None:
                out.append(None)
                continue
            validator = self._get_validator(_load_schema(schema, f"the schema in column {self.schema_column!r}"))
            value = extract_json(text, self.extract)
            out.append(1.0 if value is not _NO_VALUE and validator.is_valid(value) else 0.0)
        return out


def make_json_schema(schema: dict | str | None = None, schema_column: str = "schema", extract: bool = True,
                     name: str | None = None) -> JsonSchema:
    """Reward for JSON that validates against a JSON Schema: 1.0 if valid, 0.0 if invalid or not JSON.

    The schema is given once (`schema=`, a dict or a JSON string), or per row in a dataset column
    (`schema_column`, used when `schema` is None). The schema's `$schema` picks the draft (default: the latest).
    Combine with `json_valid` (weighted) to give partial credit for JSON that parses but does not validate.

    Args:
        schema: the JSON Schema; None reads it from `schema_column`.
        schema_column: dataset column with a per-row schema (used when `schema` is None).
        extract: look inside ```json fences and around surrounding prose.
        name: `__name__` of the reward; default "json_schema".

    Returns:
        A reward `f(completions, **columns) -> list[float | None]`; None for rows whose schema is None.

    >>> person = {"type": "object", "required": ["name", "age"],
    ...           "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}
    >>> reward = make_json_schema(person)
    >>> reward(['{"name": "Ada", "age": 36}', '{"name": "Ada", "age": -1}', '{"name": "Ada"}', "Ada, 36"])
    [1.0, 0.0, 0.0, 0.0]
    >>> make_json_schema({"type": "objekt"})
    Traceback (most recent call last):
    ...
    ValueError: parameter 'schema' is not a valid JSON Schema: 'objekt' is not valid under any of the given schemas
    """
    return JsonSchema(schema, schema_column, extract, name)


json_valid = make_json_valid()

__all__ = ["JsonValid", "JsonSchema", "make_json_valid", "make_json_schema", "extract_json", "json_valid"]
