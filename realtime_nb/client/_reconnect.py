"""How a session outlives its connection, sans I/O: the :class:`ReconnectPolicy` (backoff, session
cap, rollover margin) and which endings are worth another connection.

A Realtime connection ends at the provider's session cap (OpenAI: 60 minutes; an ``error`` with
code ``session_expired``, then close 1001) or earlier when the network or the server fails. The
session shell (:class:`~realtime_nb.client.session.Session`) reconnects by this policy, and the
:class:`~realtime_nb.client.protocol.ClientProtocol` decides when to roll over to a new connection
before the cap, between turns. Nothing here touches a socket, a thread or a clock: randomness and
time come in as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "RECONNECT_ATTEMPTS",
    "RECONNECT_FACTOR",
    "RECONNECT_FIRST_DELAY_S",
    "RECONNECT_JITTER",
    "RECONNECT_MAX_DELAY_S",
    "RETRY_CLOSE_CODES",
    "ROLLOVER_MARGIN_S",
    "ROLLOVER_MAX_SHARE",
    "SESSION_CAP_S",
    "ReconnectPolicy",
    "retry_after_close",
    "retry_after_refusal",
]

#: Delay before the first new connection after a drop: a load balancer or a server restart
#: (1012) is usually back within a second, and a blip should cost the user little.
RECONNECT_FIRST_DELAY_S: Final = 0.5
#: Each further delay is this many times the previous one (classic exponential backoff).
RECONNECT_FACTOR: Final = 2.0
#: No delay grows beyond this: someone is waiting in a notebook, and past ~10 s between tries
#: they would rather be told than wait longer.
RECONNECT_MAX_DELAY_S: Final = 10.0
#: Each delay is drawn from ``[1 - JITTER, 1]`` times its nominal value, so that the many clients
#: a server restart dropped at once do not all come back in the same instant.
RECONNECT_JITTER: Final = 0.5
#: Connections tried before giving up: 0.5 + 1 + 2 + 4 + 8 + 10 s of (nominal) waiting outlasts a
#: Wi-Fi handover or a server restart, and a dead network is reported within half a minute.
RECONNECT_ATTEMPTS: Final = 6
#: OpenAI's maximum session length (60 minutes); the server says ``session_expired`` then.
SESSION_CAP_S: Final = 3600.0
#: Roll over this long before the cap, at the first quiet moment (between turns): two minutes
#: hold several turns, so a quiet moment comes long before the cap cuts anyone off mid-sentence.
ROLLOVER_MARGIN_S: Final = 120.0
#: The margin never exceeds this share of a connection's lifetime: with a short cap (a test
#: server's, or an ``expires_at`` a few seconds away) a session still uses half of each
#: connection rather than rolling over as soon as it connects.
ROLLOVER_MAX_SHARE: Final = 0.5

#: Close codes after which the same session may well work on a new connection: going away (1001,
#: also the code the API closes an expired session with), none received (1005), abnormal with no
#: close frame (1006), server error (1011), service restart (1012), try again later (1013), bad
#: gateway (1014). Others (protocol or policy violations, a frame too big, a normal close the
#: server chose, application codes) would only end the same way again.
RETRY_CLOSE_CODES: Final = frozenset({1001, 1005, 1006, 1011, 1012, 1013, 1014})
#: HTTP statuses of a refused handshake worth retrying: rate limited, or a server-side failure.
#: Authentication (401, 403) and a wrong URL (404, 400) would be refused again.
_RETRY_HTTP: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ReconnectPolicy:
    """How :class:`~realtime_nb.client.session.Session` continues a session on a new connection.

    ``Session(reconnect=...)`` takes ``True`` (this policy's defaults), ``False`` (never
    reconnect by itself: the connection's end is final until ``reconnect()``), an ``int`` (that
    many attempts, other fields default) or a policy.

    Args:
        attempts: new connections tried after a connection ends, before giving up.
        first_delay_s, factor, max_delay_s, jitter: the backoff between attempts (see
            :meth:`delay`). After the provider ended the session (``session_expired``) or a
            rollover, the first attempt goes at once: the server is fine.
        session_cap_s: the provider's session cap; the protocol also learns it from
            ``session.expires_at`` when the server sends one, and uses the earlier. ``None``:
            only ``expires_at``.
        rollover_margin_s: how long before the cap to look for a quiet moment to roll over to a
            new connection. ``None``: never roll over (the cap ends the connection, and the
            session reconnects then).

    Raises:
        ValueError: a value out of range (the message names it and what is accepted).
    """

    attempts: int = RECONNECT_ATTEMPTS
    first_delay_s: float = RECONNECT_FIRST_DELAY_S
    factor: float = RECONNECT_FACTOR
    max_delay_s: float = RECONNECT_MAX_DELAY_S
    jitter: float = RECONNECT_JITTER
    session_cap_s: float | None = SESSION_CAP_S
    rollover_margin_s: float | None = ROLLOVER_MARGIN_S

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValueError(f"attempts must be an int >= 1, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("first_delay_s", "max_delay_s"):
            _check(name, getattr(self, name), ">= 0", lambda v: v >= 0)
        _check("factor", self.factor, ">= 1", lambda v: v >= 1)
        _check("jitter", self.jitter, "between 0 and 1", lambda v: 0 <= v <= 1)
        for name in ("session_cap_s", "rollover_margin_s"):
            value = getattr(self, name)
            if value is not None:
                _check(name, value, "> 0 or None", lambda v: v > 0)

    @classmethod
    def coerce(cls, value: bool | int | ReconnectPolicy | None) -> ReconnectPolicy | None:
        """The policy ``Session(reconnect=value)`` means (``None``: no automatic reconnection).

        Raises:
            TypeError: not a bool, an int or a policy. ValueError: an int below 1.
        """
        if isinstance(value, ReconnectPolicy):
            return value
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, int):
            if value < 1:
                raise ValueError(
                    f"reconnect={value!r}: accepted: True, False, a number of attempts >= 1, "
                    "or a ReconnectPolicy"
                )
            return cls(attempts=value)
        raise TypeError(
            f"reconnect must be True, False, a number of attempts or a ReconnectPolicy, "
            f"got {type(value).__name__}"
        )

    def delay(self, step: int, rand: float) -> float:
        """Seconds to wait before backoff step ``step`` (1, 2, ...): ``first_delay_s`` times
        ``factor ** (step - 1)``, at most ``max_delay_s``, times ``1 - jitter * rand`` (``rand``
        uniform in [0, 1), the caller's randomness)."""
        nominal = min(self.max_delay_s, self.first_delay_s * self.factor ** max(step - 1, 0))
        return nominal * (1.0 - self.jitter * min(max(rand, 0.0), 1.0))


def _check(name: str, value: object, accepted: str, ok: Callable[[float], bool]) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not ok(float(value))
    ):
        raise ValueError(f"{name} must be a number {accepted}, got {value!r}")


def retry_after_close(code: int, *, expired: bool) -> bool:
    """Whether a connection the server or the network ended (close ``code``; ``expired``: the
    server said ``session_expired`` first) is worth another one."""
    return expired or code in RETRY_CLOSE_CODES


def retry_after_refusal(http_status: int | None) -> bool:
    """Whether a failed connection attempt is worth another: ``http_status`` is the refused
    handshake's status, ``None`` when no HTTP answer came (unreachable, timed out, dropped)."""
    return http_status is None or http_status in _RETRY_HTTP
