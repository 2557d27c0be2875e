"""Token prices and the cost of a session, from ``response.done`` usage.

Prices are US dollars per million tokens, as published on OpenAI's pricing page (checked
2025-10). They change: override with :func:`set_price` or ``Session(pricing=ModelPrice(...))``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._html import CSS, ROOT_CLASSES, pretty

__all__ = [
    "LOCAL_MODEL",
    "PRICES",
    "Cost",
    "ModelPrice",
    "ResponseCost",
    "cost_of_usage",
    "price_for",
    "set_price",
]

_PER: Final = 1_000_000  # prices are quoted per million tokens


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, by modality; ``cached_*`` are the prices of cached input tokens."""

    text_in: float
    text_in_cached: float
    text_out: float
    audio_in: float
    audio_in_cached: float
    audio_out: float
    image_in: float = 0.0
    image_in_cached: float = 0.0


#: The model label the embedded local backend (:mod:`realtime_nb.local`) reports and records: its
#: own name rather than the model a client asked for, so a recording says it was made offline, and
#: priced at zero because nothing is billed.
LOCAL_MODEL: Final = "realtime-nb-local"

#: Model name prefix -> prices. Dated snapshots (``gpt-realtime-2025-08-28``) match their prefix;
#: the longest matching prefix wins, so ``gpt-realtime-mini`` is not priced as ``gpt-realtime``.
PRICES: dict[str, ModelPrice] = {
    "gpt-realtime": ModelPrice(
        text_in=4.00,
        text_in_cached=0.40,
        text_out=16.00,
        audio_in=32.00,
        audio_in_cached=0.40,
        audio_out=64.00,
        image_in=5.00,
        image_in_cached=0.50,
    ),
    "gpt-realtime-mini": ModelPrice(
        text_in=0.60,
        text_in_cached=0.06,
        text_out=2.40,
        audio_in=10.00,
        audio_in_cached=0.30,
        audio_out=20.00,
        image_in=0.80,
        image_in_cached=0.08,
    ),
    LOCAL_MODEL: ModelPrice(
        text_in=0.0,
        text_in_cached=0.0,
        text_out=0.0,
        audio_in=0.0,
        audio_in_cached=0.0,
        audio_out=0.0,
        image_in=0.0,
        image_in_cached=0.0,
    ),
}


def set_price(model_prefix: str, price: ModelPrice) -> None:
    """Set (or replace) the price of every model whose name starts with ``model_prefix``.

    Raises:
        TypeError: ``price`` is not a :class:`ModelPrice`.
    """
    if not isinstance(price, ModelPrice):
        raise TypeError(f"price must be a ModelPrice, got {type(price).__name__}")
    PRICES[model_prefix] = price


def price_for(model: str | None) -> ModelPrice | None:
    """The price of ``model`` (longest matching prefix in :data:`PRICES`), or ``None``."""
    if not model:
        return None
    best = max((p for p in PRICES if model.startswith(p)), key=len, default=None)
    return PRICES[best] if best else None


def _int(d: Mapping[str, Any] | None, key: str) -> int:
    if not isinstance(d, Mapping):
        return 0
    v = d.get(key)
    return int(v) if isinstance(v, (int, float)) else 0


def cost_of_usage(usage: Mapping[str, Any] | None, price: ModelPrice) -> float:
    """USD for one ``response.done`` ``usage`` object (uncached, cached and output tokens)."""
    if not usage:
        return 0.0
    ind = usage.get("input_token_details") or {}
    cached = ind.get("cached_tokens_details") or {}
    outd = usage.get("output_token_details") or {}
    text_in, audio_in, image_in = (
        _int(ind, "text_tokens"),
        _int(ind, "audio_tokens"),
        _int(ind, "image_tokens"),
    )
    c_text, c_audio, c_image = (
        _int(cached, "text_tokens"),
        _int(cached, "audio_tokens"),
        _int(cached, "image_tokens"),
    )
    if not ind and "input_tokens" in usage:  # no breakdown: count everything as text
        text_in = _int(usage, "input_tokens")
    text_out, audio_out = _int(outd, "text_tokens"), _int(outd, "audio_tokens")
    if not outd and "output_tokens" in usage:
        text_out = _int(usage, "output_tokens")
    usd = (
        max(text_in - c_text, 0) * price.text_in
        + c_text * price.text_in_cached
        + max(audio_in - c_audio, 0) * price.audio_in
        + c_audio * price.audio_in_cached
        + max(image_in - c_image, 0) * price.image_in
        + c_image * price.image_in_cached
        + text_out * price.text_out
        + audio_out * price.audio_out
    )
    return usd / _PER


@dataclass(frozen=True)
class ResponseCost:
    """The usage and cost of one response."""

    response_id: str
    usage: Mapping[str, Any]
    usd: float | None


@dataclass(frozen=True)
class Cost:
    """The cost of a session so far: ``total`` in USD (``None`` if the model has no price)."""

    model: str | None
    responses: tuple[ResponseCost, ...] = field(default_factory=tuple)
    priced: bool = True

    @property
    def total(self) -> float | None:
        if not self.priced:
            return None
        return sum(r.usd or 0.0 for r in self.responses)

    def __float__(self) -> float:
        return self.total or 0.0

    def __str__(self) -> str:
        n = len(self.responses)
        if self.total is None:
            return f"cost unknown: no price for model {self.model!r} ({n} responses)"
        return f"${self.total:.4f} ({n} response{'s' if n != 1 else ''})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        pretty(self, p, cycle)

    def _repr_html_(self) -> str:
        # The root keeps MathJax away from the dollar sign, and the text in the theme's colours.
        model = html.escape(str(self.model), quote=True)
        return (
            f"{CSS}<div class='{ROOT_CLASSES} rtnb-cost' title='{model}'>"
            f"{html.escape(str(self))}</div>"
        )


def session_cost(
    model: str | None,
    usages: Iterable[tuple[str, Mapping[str, Any]]],
    price: ModelPrice | None = None,
) -> Cost:
    """A :class:`Cost` from ``(response_id, usage)`` pairs, priced for ``model`` (or ``price``)."""
    p = price or price_for(model)
    return Cost(
        model=model,
        responses=tuple(
            ResponseCost(rid, u, cost_of_usage(u, p) if p else None) for rid, u in usages
        ),
        priced=p is not None,
    )
