"""Small composable checks over the turns of a recording.

A check looks at one turn (:class:`TurnRecord`: what the user said, the answer, the tool calls,
latency, cost, errors) and passes, fails (saying why) or is skipped. Its *scope* says how the
turns of a call are combined:

- ``"each"``: every turn must pass (one result per turn): :func:`not_said`, :func:`no_errors`,
  :func:`latency_below`, :func:`check` (any callable), :func:`graded`;
- ``"any"``: some turn must pass (one result for the call): :func:`said`, :func:`tool_called`;
- ``"call"``: the call as a whole: :func:`cost_below` (the call's total cost);
- a turn index: that turn only (``said("Paris").at(1)``).

``.each_turn()``, ``.any_turn()`` and ``.at(n)`` change the scope; ``a & b``, ``a | b`` and
``~a`` combine checks turn by turn (the result takes the left check's scope). ``.named("...")``
renames a check in reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "Check",
    "CheckResult",
    "TurnRecord",
    "check",
    "cost_below",
    "graded",
    "latency_below",
    "no_errors",
    "not_said",
    "said",
    "tool_called",
]

JSON = dict[str, Any]
Status = Literal["pass", "fail", "skip"]
Scope: TypeAlias = Literal["each", "any", "call"] | int

#: Environment variables naming the model grader's OpenAI-compatible endpoint, model and key.
GRADER_URL_ENV: Final = "REALTIME_NB_GRADER_URL"
GRADER_MODEL_ENV: Final = "REALTIME_NB_GRADER_MODEL"
GRADER_KEY_ENV: Final = "REALTIME_NB_GRADER_API_KEY"
#: Seconds to wait for the grader's answer: a chat completion of a few hundred tokens.
GRADER_TIMEOUT_S: Final = 30.0
#: Characters of a turn's text quoted in a failure message before eliding.
QUOTE_CHARS: Final = 120


@dataclass(frozen=True)
class ToolCallRecord:
    """A tool call of a turn: its name, its arguments (parsed when they are JSON) and output."""

    name: str | None
    arguments: Any
    output: str | None
    call_id: str | None = None


@dataclass(frozen=True)
class TurnRecord:
    """One turn as checks see it (a row of the corpus's turns table)."""

    recording: str
    turn: int
    user_text: str
    assistant_text: str
    tool_calls: tuple[ToolCallRecord, ...]
    latency_ms: float | None
    cost_usd: float | None
    errors: tuple[str, ...]
    status: str | None
    interrupted: bool
    row: JSON = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: JSON) -> TurnRecord:
        calls = []
        for c in row.get("tool_calls") or []:
            args: Any = c.get("arguments")
            if isinstance(args, str):
                with contextlib.suppress(ValueError):  # not JSON: checked as their text
                    args = json.loads(args)
            calls.append(ToolCallRecord(c.get("name"), args, c.get("output"), c.get("call_id")))
        return cls(
            recording=str(row.get("recording")),
            turn=int(row.get("turn") or 0),
            user_text=row.get("user_text") or "",
            assistant_text=row.get("assistant_text") or "",
            tool_calls=tuple(calls),
            latency_ms=row.get("latency_ms"),
            cost_usd=row.get("cost_usd"),
            errors=tuple(row.get("errors") or ()),
            status=row.get("status"),
            interrupted=bool(row.get("interrupted")),
            row=dict(row),
        )


@dataclass(frozen=True)
class CheckResult:
    """``status`` is ``pass``, ``fail`` or ``skip``; ``detail`` says why."""

    status: Status
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "fail"


PASS: Final = CheckResult("pass")


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "...")


def _valid_scope(scope: Any) -> Scope:
    if scope in ("each", "any", "call") or (isinstance(scope, int) and not isinstance(scope, bool)):
        return scope  # type: ignore[no-any-return]  # narrowed by the test above
    raise ValueError(
        f"unknown check scope {scope!r}; accepted: 'each', 'any', 'call', a turn index"
    )


class Check:
    """A check over turns. Subclasses implement :meth:`test_turn` (and, for the ``call`` scope,
    :meth:`test_call`)."""

    name: str = "check"
    scope: Scope = "each"

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        raise NotImplementedError  # pragma: no cover - every concrete check overrides it

    def test_call(self, turns: Sequence[TurnRecord]) -> CheckResult:
        """The call as a whole (scope ``call``); by default every turn must pass."""
        return _all_turns(self, turns)

    def run(self, turns: Sequence[TurnRecord]) -> list[tuple[int | None, CheckResult]]:
        """Results of this check over a call's turns: ``(turn index, result)``, with ``None``
        for a result about the whole call."""
        scope = self.scope
        if scope == "each":
            return [(t.turn, _test(self, t)) for t in turns]
        if scope == "call":
            try:
                return [(None, self.test_call(turns))]
            except Exception as exc:  # as in _test
                return [(None, CheckResult("fail", f"{self.name} raised {exc!r}"))]
        if scope == "any":
            results = [(t.turn, _test(self, t)) for t in turns]
            hit = next((i for i, r in results if r.status == "pass"), None)
            if hit is not None:
                return [(None, CheckResult("pass", f"turn {hit}"))]
            if results and all(r.status == "skip" for _, r in results):
                return [(None, results[0][1])]
            why = "; ".join(f"turn {i}: {r.detail}" for i, r in results if r.detail)
            return [(None, CheckResult("fail", f"no turn passed ({why or 'no turns'})"))]
        turn = next((t for t in turns if t.turn == scope), None)
        if turn is None:
            return [(scope, CheckResult("fail", f"there is no turn {scope} ({len(turns)} turns)"))]
        return [(scope, _test(self, turn))]

    # -- scope and names -------------------------------------------------------------------------

    def _with(self, **changes: Any) -> Check:
        import copy

        new = copy.copy(self)
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def at(self, turn: int) -> Check:
        """This check on turn ``turn`` only."""
        return self._with(scope=_valid_scope(turn), name=f"{self.name}@{turn}")

    def each_turn(self) -> Check:
        """Every turn must pass."""
        return self._with(scope="each")

    def any_turn(self) -> Check:
        """Some turn must pass."""
        return self._with(scope="any")

    def named(self, name: str) -> Check:
        """The same check, shown as ``name`` in reports."""
        return self._with(name=name)

    # -- composition -----------------------------------------------------------------------------

    def __and__(self, other: Check) -> Check:
        return _Combined("and", self, other)

    def __or__(self, other: Check) -> Check:
        return _Combined("or", self, other)

    def __invert__(self) -> Check:
        return _Not(self)

    def __repr__(self) -> str:
        return f"<Check {self.name} ({self.scope})>"


def _test(c: Check, turn: TurnRecord) -> CheckResult:
    """``c.test_turn(turn)``, a raising check failing the turn with the exception."""
    try:
        return c.test_turn(turn)
    except Exception as exc:  # a user's check may raise anything: report it, go on
        return CheckResult("fail", f"{c.name} raised {type(exc).__name__}: {exc}")


def _all_turns(c: Check, turns: Sequence[TurnRecord]) -> CheckResult:
    bad = [(t.turn, _test(c, t)) for t in turns]
    fails = [(i, r) for i, r in bad if r.status == "fail"]
    if fails:
        return CheckResult("fail", "; ".join(f"turn {i}: {r.detail}" for i, r in fails))
    return PASS


class _Combined(Check):
    def __init__(self, op: str, a: Check, b: Check) -> None:
        self.op, self.a, self.b = op, a, b
        self.name = f"({a.name} {op} {b.name})"
        self.scope = a.scope if a.scope == b.scope else "each"

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        ra = _test(self.a, turn)
        if self.op == "and" and ra.status == "fail":
            return ra
        if self.op == "or" and ra.status == "pass":
            return ra
        rb = _test(self.b, turn)
        if self.op == "and":
            return rb if rb.status != "pass" or ra.status != "skip" else ra
        if rb.status == "pass":
            return rb
        return CheckResult("fail", f"{ra.detail}; and {rb.detail}")


class _Not(Check):
    def __init__(self, inner: Check) -> None:
        self.inner = inner
        self.name = f"not {inner.name}"
        self.scope = inner.scope

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        r = _test(self.inner, turn)
        if r.status == "skip":
            return r
        if r.status == "pass":
            return CheckResult("fail", f"{self.inner.name} passed ({r.detail})".strip())
        return PASS


# -- the checks ------------------------------------------------------------------------------------


class _Said(Check):
    def __init__(self, phrases: tuple[str | re.Pattern[str], ...], negate: bool) -> None:
        if not phrases:
            raise ValueError("said()/not_said() need at least one phrase or compiled regex")
        for p in phrases:
            if not isinstance(p, (str, re.Pattern)):
                raise TypeError(
                    f"said()/not_said() take strings or re.compile(...) patterns, got "
                    f"{type(p).__name__}"
                )
        self.phrases = phrases
        self.negate = negate
        shown = ", ".join(p if isinstance(p, str) else f"/{p.pattern}/" for p in phrases)
        self.name = f"{'not_said' if negate else 'said'}({shown})"
        self.scope = "each" if negate else "any"

    def _found(self, text: str) -> str | re.Pattern[str] | None:
        folded = text.casefold()
        for p in self.phrases:
            if isinstance(p, str) and p.casefold() in folded:
                return p
            if isinstance(p, re.Pattern) and p.search(text):
                return p
        return None

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        hit = self._found(turn.assistant_text)
        if self.negate:
            if hit is None:
                return PASS
            shown = hit if isinstance(hit, str) else hit.pattern
            return CheckResult("fail", f"said {shown!r}: {_quote(turn.assistant_text)}")
        if hit is not None:
            return PASS
        return CheckResult("fail", f"answer was {_quote(turn.assistant_text)}")


def said(*phrases: str | re.Pattern[str]) -> Check:
    """The assistant said one of ``phrases`` (case-insensitive substring, or a compiled regex)
    in some turn (``.at(n)`` / ``.each_turn()`` to narrow)."""
    return _Said(tuple(phrases), negate=False)


def not_said(*phrases: str | re.Pattern[str]) -> Check:
    """The assistant said none of ``phrases`` in any turn."""
    return _Said(tuple(phrases), negate=True)


def _arg_matches(expected: Any, actual: Any) -> bool:
    if callable(expected):
        return bool(expected(actual))
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().casefold() == actual.strip().casefold()
    return bool(expected == actual)


class _ToolCalled(Check):
    def __init__(self, name: str, args: JSON) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"tool_called() needs the tool's name, got {name!r}")
        self.tool, self.args = name, args
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        self.name = f"tool_called({name}{', ' + shown if shown else ''})"
        self.scope = "any"

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        calls = [c for c in turn.tool_calls if c.name == self.tool]
        if not calls:
            made = ", ".join(str(c.name) for c in turn.tool_calls) or "none"
            return CheckResult("fail", f"{self.tool} not called (calls: {made})")
        for c in calls:
            got = c.arguments if isinstance(c.arguments, dict) else {}
            if all(k in got and _arg_matches(v, got[k]) for k, v in self.args.items()):
                return PASS
        return CheckResult(
            "fail",
            f"{self.tool} called with {', '.join(json.dumps(c.arguments) for c in calls)}",
        )


def tool_called(name: str, **arguments: Any) -> Check:
    """The assistant called tool ``name`` in some turn, with these arguments (strings compared
    case-insensitively, a callable value is a predicate over the argument)."""
    return _ToolCalled(name, arguments)


class _NoErrors(Check):
    name = "no_errors"
    scope = "each"

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        if turn.errors:
            return CheckResult("fail", "; ".join(turn.errors))
        if turn.status == "failed":
            return CheckResult("fail", "the response failed")
        return PASS


def no_errors() -> Check:
    """No error event (nor failed response) in the turn."""
    return _NoErrors()


class _LatencyBelow(Check):
    def __init__(self, ms: float) -> None:
        if not isinstance(ms, (int, float)) or ms <= 0:
            raise ValueError(f"latency_below() takes a positive number of milliseconds, got {ms!r}")
        self.ms = float(ms)
        self.name = f"latency_below({ms:g} ms)"
        self.scope = "each"

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        if turn.latency_ms is None:
            return CheckResult("skip", "no latency (the turn got no answer)")
        if turn.latency_ms < self.ms:
            return PASS
        return CheckResult("fail", f"latency {turn.latency_ms:.0f} ms >= {self.ms:g} ms")


def latency_below(ms: float) -> Check:
    """End of the user's turn to the first audio of the answer below ``ms`` milliseconds
    (:attr:`realtime_nb.core.metrics.TurnMetrics.latency_ms`); skipped for an unanswered turn."""
    return _LatencyBelow(ms)


class _CostBelow(Check):
    def __init__(self, usd: float) -> None:
        if not isinstance(usd, (int, float)) or usd <= 0:
            raise ValueError(f"cost_below() takes a positive amount of USD, got {usd!r}")
        self.usd = float(usd)
        self.name = f"cost_below(${usd:g})"
        self.scope = "call"

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        if turn.cost_usd is None:
            return CheckResult("skip", "no price known for this model")
        if turn.cost_usd < self.usd:
            return PASS
        return CheckResult("fail", f"cost ${turn.cost_usd:.4f} >= ${self.usd:g}")

    def test_call(self, turns: Sequence[TurnRecord]) -> CheckResult:
        costs = [t.cost_usd for t in turns]
        if not costs or any(c is None for c in costs):
            return CheckResult("skip", "no price known for this model")
        total = sum(c or 0.0 for c in costs)
        if total < self.usd:
            return PASS
        return CheckResult("fail", f"call cost ${total:.4f} >= ${self.usd:g}")


def cost_below(usd: float) -> Check:
    """The call's total cost below ``usd`` (``.each_turn()``: each turn's); skipped when the
    model has no known price (the local backend)."""
    return _CostBelow(usd)


class _Callable(Check):
    def __init__(self, fn: Callable[[TurnRecord], Any], name: str | None) -> None:
        if not callable(fn):
            raise TypeError(f"check() takes a callable over a turn, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", "check"))
        self.scope = "each"

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        out = self.fn(turn)
        if isinstance(out, CheckResult):
            return out
        if out is None or out is True:
            return PASS
        if out is False:
            return CheckResult("fail", f"{self.name} returned False")
        if isinstance(out, str):  # a message is a failure that says why
            return CheckResult("fail", out)
        raise TypeError(
            f"check {self.name} returned {type(out).__name__}; return a bool, None (pass), a "
            "message (fail) or a CheckResult"
        )


def check(fn: Callable[[TurnRecord], Any], name: str | None = None) -> Check:
    """Any callable over a :class:`TurnRecord` as a check: it returns ``True``/``None`` (pass),
    ``False`` or a message (fail), or a :class:`CheckResult`; raising fails the turn."""
    return _Callable(fn, name)


# -- the model-graded check -----------------------------------------------------------------------

_GRADER_SYSTEM: Final = (
    "You grade one turn of a voice assistant's conversation against a criterion. Answer with "
    'one JSON object and nothing else: {"pass": true or false, "reason": "one sentence"}.'
)


def _parse_verdict(content: str) -> CheckResult:
    text = content.strip()
    fenced = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        verdict = json.loads(fenced.group(0) if fenced else text)
    except ValueError:
        return CheckResult("fail", f"the grader's answer is not JSON: {_quote(text)}")
    if not isinstance(verdict, dict) or not isinstance(verdict.get("pass"), bool):
        return CheckResult("fail", f'the grader\'s answer has no boolean "pass": {_quote(text)}')
    reason = str(verdict.get("reason") or "")
    return CheckResult("pass" if verdict["pass"] else "fail", reason)


class _Graded(Check):
    def __init__(
        self,
        criterion: str,
        url: str | None,
        model: str | None,
        api_key: str | None,
        timeout: float,
    ) -> None:
        if not isinstance(criterion, str) or not criterion.strip():
            raise ValueError("graded() needs a criterion, e.g. 'the answer is polite'")
        self.criterion = criterion
        self.url = url or os.environ.get(GRADER_URL_ENV)
        self.model = model or os.environ.get(GRADER_MODEL_ENV) or "gpt-4o-mini"
        self.api_key = api_key or os.environ.get(GRADER_KEY_ENV)
        self.timeout = timeout
        self.name = f"graded({criterion[:40]})"
        self.scope = "each"

    def test_turn(self, turn: TurnRecord) -> CheckResult:
        if not self.url:
            return CheckResult("skip", f"no grader endpoint (pass url= or set {GRADER_URL_ENV})")
        calls = "\n".join(
            f"- {c.name}({json.dumps(c.arguments)}) -> {c.output}" for c in turn.tool_calls
        )
        prompt = (
            f"Criterion: {self.criterion}\n\nUser: {turn.user_text}\n"
            f"Tool calls:\n{calls or '- none'}\nAssistant: {turn.assistant_text}"
        )
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": _GRADER_SYSTEM},
                {"role": "user", "content": prompt},
            ],
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        endpoint = self.url.rstrip("/") + "/chat/completions"
        request = urllib.request.Request(
            endpoint, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
            content = answer["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as exc:
            return CheckResult("fail", f"grader error: HTTP {exc.code} from {endpoint}")
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            return CheckResult("fail", f"grader error: {exc} ({endpoint})")
        return _parse_verdict(str(content))


def graded(
    criterion: str,
    *,
    url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = GRADER_TIMEOUT_S,
) -> Check:
    """A model judges each turn against ``criterion`` through any OpenAI-compatible chat
    endpoint (``url`` ending before ``/chat/completions``; default ``$REALTIME_NB_GRADER_URL``,
    model ``$REALTIME_NB_GRADER_MODEL``, key ``$REALTIME_NB_GRADER_API_KEY``). Skipped without
    an endpoint; an unreachable grader or an answer that is not a verdict fails the turn."""
    return _Graded(criterion, url, model, api_key, timeout)
