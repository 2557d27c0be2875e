"""Python functions as Realtime function tools, sans I/O.

``@tool`` turns a function into a :class:`Tool`: a JSON schema built from its signature and
docstring, argument parsing (JSON text -> keyword arguments of the right Python types) and result
encoding (any return value -> the ``output`` string of a ``function_call_output`` item).

:class:`ToolCall` is a call the model made; when to run one and when to ask for the follow-up
response is decided by the client (``realtime_nb.client._policies.ToolCallTracker``).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
import sys
import types
import typing
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Union

__all__ = [
    "DEFAULT_TOOL_TIMEOUT_S",
    "MAX_TOOL_OUTPUT_CHARS",
    "Tool",
    "ToolArgumentError",
    "ToolCall",
    "ToolDefinitionError",
    "UndescribedToolWarning",
    "as_tool",
    "cap_output",
    "encode_error",
    "encode_result",
    "tool",
]

JSON = dict[str, Any]

#: How long a tool may run before its call is answered with a timeout error. Long enough for a
#: web request or a small computation, short enough that a spoken conversation does not stall on
#: a hung call; per-tool ``timeout=`` overrides it (``None`` = no limit).
DEFAULT_TOOL_TIMEOUT_S: Final = 30.0

#: Longest error text returned to the model: enough for a message and its type, not a traceback.
_MAX_ERROR_CHARS: Final = 2_000
#: Longest tool output sent to the model, in characters. gpt-realtime's context window is 32k
#: tokens (about 4 characters each in English): 64 000 characters is half of it, so one huge
#: result still leaves room for the instructions and the conversation instead of pushing them out
#: (the server drops the oldest items to fit) or failing the response; and the event stays far
#: below the API's 15 MiB limit on a client event, which a longer output would break.
MAX_TOOL_OUTPUT_CHARS: Final = 64_000

_ACCEPTED_TYPES: Final = (
    "str, int, float, bool, None, Literal[...], Optional[X], X | None, list[X], tuple[X, ...], "
    "set[X], dict[str, X], Enum subclasses, dataclasses, pydantic models, Any, Annotated[X, 'doc']"
)


class ToolDefinitionError(TypeError):
    """A function cannot be described as a tool (an unsupported annotation, a bad name, ...)."""


class ToolArgumentError(ValueError):
    """The model's arguments for a call do not fit the function's signature."""


class UndescribedToolWarning(UserWarning):
    """A tool function has no docstring: the model gets its name and parameters, no description."""


#: Functions already warned about: each warns once, however often it is made a tool (a plain
#: function is made one by every Session it is given to).
_warned_undescribed: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def _warn_undescribed(func: Callable[..., Any], tool_name: str) -> None:
    try:
        if func in _warned_undescribed:
            return
        _warned_undescribed.add(func)
    except TypeError:  # not weakly referenceable (a builtin): warn every time
        pass
    qualname = getattr(func, "__qualname__", tool_name)
    warnings.warn(
        f"tool {tool_name!r} (function {qualname}) has no docstring: the model gets no "
        "description of what it does or when to call it; add a docstring or pass "
        "@tool(description=...)",
        UndescribedToolWarning,
        stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside realtime_nb (the
    ``@tool`` line or the ``Session(tools=...)`` call), not at this module."""
    package = __name__.partition(".")[0]
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == package:
        frame = frame.f_back
        level += 1
    return level


# --- docstrings ----------------------------------------------------------------------------------

_SECTION_RE: Final = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?|Notes?|"
    r"See Also|Attributes)\s*:?\s*$"
)
_GOOGLE_PARAM_RE: Final = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_SPHINX_PARAM_RE: Final = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_NUMPY_PARAM_RE: Final = re.compile(r"^\s*(\w+)\s*(?::\s*(.*))?$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary (text before the first section) and per-parameter descriptions.

    Understands Google (``Args:``), NumPy (``Parameters`` + dashes) and Sphinx (``:param x:``).
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    base_indent: int | None = None
    numpy_style = False
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        m_sphinx = _SPHINX_PARAM_RE.match(line)
        if m_sphinx:
            current = m_sphinx.group(1)
            params[current] = m_sphinx.group(2).strip()
            section = "sphinx"
            i += 1
            continue
        if stripped.startswith(":") and section == "sphinx":
            current = None  # :returns:, :raises: ...
            i += 1
            continue
        m_sec = _SECTION_RE.match(line)
        is_numpy_header = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
        if m_sec and (line.rstrip().endswith(":") or is_numpy_header):
            name = m_sec.group(1).lower()
            section = "params" if name in ("args", "arguments", "parameters", "params") else "other"
            numpy_style = is_numpy_header
            current = None
            base_indent = None
            i += 2 if is_numpy_header else 1
            continue
        if section is None:
            summary.append(stripped)
        elif section == "params" and stripped:
            indent = len(line) - len(line.lstrip())
            if base_indent is None:
                base_indent = indent
            if indent <= base_indent:
                m = None if numpy_style else _GOOGLE_PARAM_RE.match(line)
                if m and m.group(3) is not None and ":" in line:
                    current = m.group(1).lstrip("*")
                    params[current] = m.group(3).strip()
                else:
                    m_np = _NUMPY_PARAM_RE.match(line)
                    current = m_np.group(1) if m_np else None
                    if current:
                        params[current] = ""
            elif current:
                params[current] = (params[current] + " " + stripped).strip()
        elif section == "sphinx" and current and stripped:
            params[current] = (params[current] + " " + stripped).strip()
        i += 1
    text = "\n".join(summary).strip()
    summary_text = re.sub(r"\s*\n\s*", " ", text.split("\n\n")[0]) if text else ""
    return summary_text, {k: v for k, v in params.items() if v}


# --- JSON schema from annotations ----------------------------------------------------------------


def _is_pydantic_model(tp: object) -> bool:
    return (
        isinstance(tp, type) and hasattr(tp, "model_json_schema") and hasattr(tp, "model_validate")
    )


def _inline_refs(schema: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    """Replace ``{"$ref": "#/$defs/X"}`` with the definition: a nested schema cannot point at a
    root ``$defs`` it no longer sits under."""
    if depth > 32:
        raise ToolDefinitionError("pydantic model is recursive; tools need a finite schema")
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = dict(defs[ref.split("/")[-1]])
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            return _inline_refs({**target, **extra}, defs, depth + 1)
        return {k: _inline_refs(v, defs, depth + 1) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs, depth + 1) for v in schema]
    return schema


def _json_default(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value, default=_json_default)
    except (TypeError, ValueError):
        return False
    return True


def schema_for(tp: Any, where: str = "value") -> JSON:
    """The JSON schema of a Python annotation.

    Raises:
        ToolDefinitionError: the annotation is not one of the supported types (listed).
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        inner = schema_for(args[0], where)
        docs = [a for a in args[1:] if isinstance(a, str)]
        if docs:
            inner["description"] = docs[0]
        return inner
    if tp is Any or tp is inspect.Parameter.empty or tp is object:
        return {}
    if tp is type(None) or tp is None:
        return {"type": "null"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if origin is Literal:
        values = list(args)
        kinds = {type(v) for v in values}
        out: JSON = {"enum": values}
        names = {str: "string", int: "integer", bool: "boolean", float: "number"}
        if len(kinds) == 1 and next(iter(kinds)) in names:
            out = {"type": names[next(iter(kinds))], "enum": values}
        return out
    if origin in (Union, types.UnionType):
        non_null = [a for a in args if a is not type(None)]
        nullable = len(non_null) < len(args)
        if len(non_null) == 1:
            inner = schema_for(non_null[0], where)
            if not nullable:
                return inner
            t = inner.get("type")
            if isinstance(t, str) and "enum" not in inner:
                return {**inner, "type": [t, "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        options = [schema_for(a, where) for a in non_null]
        if nullable:
            options.append({"type": "null"})
        return {"anyOf": options}
    if tp in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return {
                "type": "array",
                "prefixItems": [schema_for(a, where) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        out = {"type": "array"}
        if args:
            out["items"] = schema_for(args[0], where)
        if origin in (set, frozenset):
            out["uniqueItems"] = True
        return out
    if tp is dict or origin in (dict, Mapping) or tp is Mapping:
        out = {"type": "object"}
        if args:
            if args[0] is not str:
                raise ToolDefinitionError(
                    f"{where}: dict keys must be str (JSON object keys), got {args[0]!r}"
                )
            out["additionalProperties"] = schema_for(args[1], where)
        return out
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return schema_for(Literal[tuple(m.value for m in tp)], where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _object_schema_from_dataclass(tp, where)
    if _is_pydantic_model(tp):
        raw = tp.model_json_schema()
        schema = _inline_refs(raw, raw.get("$defs", {}))
        schema.pop("title", None)
        return typing.cast(JSON, schema)
    raise ToolDefinitionError(
        f"{where}: unsupported annotation {tp!r}; tools accept {_ACCEPTED_TYPES}"
    )


def _object_schema_from_dataclass(cls: type, where: str) -> JSON:
    hints = typing.get_type_hints(cls, include_extras=True)
    summary, docs = parse_docstring(
        cls.__doc__ if cls.__doc__ and "(" not in cls.__doc__[:80] else None
    )
    props: JSON = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        prop = schema_for(hints.get(f.name, Any), f"{where}.{f.name}")
        if f.name in docs and "description" not in prop:
            prop["description"] = docs[f.name]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
        elif f.default is not dataclasses.MISSING and _jsonable(f.default):
            prop.setdefault("default", _json_default(f.default))
        props[f.name] = prop
    out: JSON = {"type": "object", "properties": props, "required": required}
    if summary:
        out["description"] = summary
    out["additionalProperties"] = False
    return out


# --- argument conversion -------------------------------------------------------------------------


def _convert(value: Any, tp: Any, where: str) -> Any:
    """JSON-decoded ``value`` to the Python type ``tp`` (dataclasses, enums, models, ...).

    Raises:
        ToolArgumentError: the value does not fit (says where, what was expected and what came).
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _convert(value, args[0], where)
    if tp is Any or tp is inspect.Parameter.empty or tp is object:
        return value

    def bad(expected: str) -> ToolArgumentError:
        return ToolArgumentError(f"{where}: expected {expected}, got {json.dumps(value)[:80]}")

    if tp is type(None) or tp is None:
        if value is not None:
            raise bad("null")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("a boolean")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise bad("an integer")
            return int(value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if origin is Literal:
        if value not in args:
            raise bad("one of " + ", ".join(json.dumps(a) for a in args))
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except ToolArgumentError as exc:
                errors.append(str(exc))
        raise ToolArgumentError("; ".join(errors) or f"{where}: no matching type")
    if tp in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset):
        if not isinstance(value, list):
            raise bad("an array")
        kind = origin or tp
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise bad(f"an array of {len(args)} items")
            return tuple(
                _convert(v, a, f"{where}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return kind(items) if kind is not list else items
    if tp is dict or origin in (dict, Mapping) or tp is Mapping:
        if not isinstance(value, dict):
            raise bad("an object")
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _convert(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise bad("one of " + ", ".join(json.dumps(m.value) for m in tp)) from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad("an object")
        hints = typing.get_type_hints(tp, include_extras=True)
        known = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = set(value) - known
        if unknown:
            raise ToolArgumentError(
                f"{where}: unknown field(s) {sorted(unknown)}; accepted: {sorted(known)}"
            )
        kwargs = {k: _convert(v, hints.get(k, Any), f"{where}.{k}") for k, v in value.items()}
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise ToolArgumentError(f"{where}: {exc}") from None
    if _is_pydantic_model(tp):
        try:
            return tp.model_validate(value)
        except ValueError as exc:  # pydantic.ValidationError subclasses ValueError
            raise ToolArgumentError(f"{where}: {exc}") from None
    return value


# --- result encoding -----------------------------------------------------------------------------


def _to_jsonable(value: Any) -> Any:
    if _is_pydantic_model(type(value)):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return value


def encode_result(value: Any) -> str:
    """A tool's return value as ``function_call_output.output`` text.

    ``str`` is sent as is; ``None`` as ``{"ok": true}`` (the model needs something to read);
    anything else as JSON (dataclasses, pydantic models, enums and numpy values included), falling
    back to ``str(value)`` for objects JSON cannot express.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return '{"ok": true}'
    try:
        return json.dumps(_to_jsonable(value), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def cap_output(output: str, limit: int = MAX_TOOL_OUTPUT_CHARS) -> str:
    """``output`` cut to its first ``limit`` characters when longer, with a note the model reads:
    ``[output cut: N of M characters]``."""
    if len(output) <= limit:
        return output
    return f"{output[:limit]}\n[output cut: {limit} of {len(output)} characters]"


def encode_error(exc: BaseException, *, secrets: Iterable[str] = ()) -> str:
    """An exception as a ``function_call_output`` the model can read: ``{"error": "Type: msg"}``.

    Any of ``secrets`` found in the message is replaced by ``[redacted]``.
    """
    if isinstance(exc, TimeoutError):
        msg = str(exc) or "the tool did not finish in time"
    else:
        msg = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for s in secrets:
        if s:
            msg = msg.replace(s, "[redacted]")
    return json.dumps({"error": msg[:_MAX_ERROR_CHARS]}, ensure_ascii=False)


# --- Tool ----------------------------------------------------------------------------------------

_NAME_RE: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(eq=False)
class Tool:
    """A Python function the model may call. Calling the ``Tool`` calls the function."""

    func: Callable[..., Any]
    name: str
    description: str
    parameters: JSON
    timeout: float | None = DEFAULT_TOOL_TIMEOUT_S
    _hints: dict[str, Any] = field(default_factory=dict, repr=False)
    _signature: inspect.Signature | None = field(default=None, repr=False)

    @property
    def is_async(self) -> bool:
        """Whether the function is ``async def`` (runs on the session's loop, not a thread)."""
        return inspect.iscoroutinefunction(self.func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def definition(self) -> JSON:
        """The ``{"type": "function", ...}`` entry for ``session.tools`` / ``response.tools``."""
        out: JSON = {"type": "function", "name": self.name, "parameters": self.parameters}
        if self.description:
            out["description"] = self.description
        return out

    def parse_arguments(self, arguments: str | Mapping[str, Any] | None) -> dict[str, Any]:
        """The model's ``arguments`` (JSON text) as keyword arguments for the function.

        Raises:
            ToolArgumentError: not JSON, not an object, a missing required or unknown argument,
                or a value of the wrong type; the message names it and says what is accepted.
        """
        if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
            data: Any = {}
        elif isinstance(arguments, str):
            try:
                data = json.loads(arguments)
            except json.JSONDecodeError as exc:
                raise ToolArgumentError(
                    f"arguments for {self.name} are not valid JSON ({exc.msg} at char {exc.pos})"
                ) from None
        else:
            data = dict(arguments)
        if not isinstance(data, dict):
            raise ToolArgumentError(
                f"arguments for {self.name} must be a JSON object, got {type(data).__name__}"
            )
        sig = self._signature or inspect.signature(self.func)
        params = {
            n: p
            for n, p in sig.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        unknown = set(data) - set(params)
        if unknown and not has_var_kw:
            raise ToolArgumentError(
                f"{self.name}: unknown argument(s) {sorted(unknown)}; accepted: {sorted(params)}"
            )
        missing = [n for n, p in params.items() if p.default is p.empty and n not in data]
        if missing:
            raise ToolArgumentError(f"{self.name}: missing required argument(s) {missing}")
        return {
            k: _convert(v, self._hints.get(k, Any), f"{self.name}({k})") for k, v in data.items()
        }


def _make_tool(
    func: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    timeout: float | None,
    localns: Mapping[str, Any] | None = None,
) -> Tool:
    if not callable(func):
        raise ToolDefinitionError(f"@tool needs a function, got {type(func).__name__}")
    tool_name = str(name or getattr(func, "__name__", ""))
    if not _NAME_RE.match(tool_name):
        raise ToolDefinitionError(
            f"tool name {tool_name!r} is not accepted: use 1-64 letters, digits, '_' or '-'"
        )
    try:
        hints = typing.get_type_hints(func, localns=localns, include_extras=True)
    except Exception as exc:  # unresolvable forward references
        raise ToolDefinitionError(f"{tool_name}: cannot resolve annotations ({exc})") from None
    sig = inspect.signature(func)
    summary, param_docs = parse_docstring(func.__doc__)
    props: JSON = {}
    required: list[str] = []
    for pname, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind is p.POSITIONAL_ONLY:
            raise ToolDefinitionError(
                f"{tool_name}: parameter {pname!r} is positional-only; the model passes arguments"
                " by name"
            )
        prop = schema_for(hints.get(pname, Any), f"{tool_name}({pname})")
        if pname in param_docs and "description" not in prop:
            prop["description"] = param_docs[pname]
        if p.default is p.empty:
            required.append(pname)
        elif _jsonable(p.default) and p.default is not None:
            prop.setdefault("default", _json_default(p.default))
        props[pname] = prop
    parameters: JSON = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ToolDefinitionError(
            f"timeout must be a positive number of seconds or None, got {timeout!r}"
        )
    if description is None and not summary:
        _warn_undescribed(func, tool_name)
    return Tool(
        func=func,
        name=tool_name,
        description=description if description is not None else summary,
        parameters=parameters,
        timeout=timeout,
        _hints=hints,
        _signature=sig,
    )


@typing.overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@typing.overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TOOL_TIMEOUT_S,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TOOL_TIMEOUT_S,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a Realtime function tool of a Python function: ``@tool`` or ``@tool(timeout=5)``.

    The schema comes from the signature (see ``_ACCEPTED_TYPES``), descriptions from the
    docstring (Google, NumPy or Sphinx style). ``async def`` tools run on the session's event
    loop, plain functions in a worker thread.

    Raises:
        ToolDefinitionError: an annotation is not supported, the name is not accepted by the API,
            or a parameter is positional-only.
    """
    # The caller's locals resolve string annotations naming classes defined in a function body
    # (``from __future__ import annotations`` turns every annotation into a string).
    if func is not None:
        localns = dict(sys._getframe(1).f_locals)
        return _make_tool(
            func, name=name, description=description, timeout=timeout, localns=localns
        )

    def wrap(f: Callable[..., Any]) -> Tool:
        localns = dict(sys._getframe(1).f_locals)
        return _make_tool(f, name=name, description=description, timeout=timeout, localns=localns)

    return wrap


def as_tool(obj: Tool | Callable[..., Any] | Mapping[str, Any]) -> Tool | JSON:
    """A :class:`Tool` for a function, the same ``Tool``, or a raw tool definition dict (e.g. an
    MCP tool) kept as it is.

    Raises:
        ToolDefinitionError: ``obj`` is none of those.
    """
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, Mapping):
        if "type" not in obj:
            raise ToolDefinitionError(
                f"a tool definition dict needs a 'type' ('function' or 'mcp'), got keys "
                f"{sorted(obj)}"
            )
        return dict(obj)
    if callable(obj):
        return tool(obj)
    raise ToolDefinitionError(
        f"expected a @tool function, a plain function or a tool definition dict, got "
        f"{type(obj).__name__}"
    )


# --- function calls -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A function call the model made."""

    call_id: str
    name: str
    arguments: str
    item_id: str | None
    response_id: str | None
