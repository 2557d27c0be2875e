"""Where a session connects: OpenAI, Azure OpenAI, any URL, or the embedded local server (pure).

:func:`resolve_endpoint` turns the ``Session`` arguments and the environment into an
:class:`Endpoint`: the WebSocket URL (never carrying a credential), the headers to send (which
may), a short human label and the list of secrets the recorder and the logs must never show.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._redact import header_secrets, safe_url, searchable, url_secrets

__all__ = ["Endpoint", "EndpointError", "resolve_endpoint"]

#: OpenAI's REST base; the Realtime WebSocket lives at ``<base>/realtime`` with ``ws(s)``.
OPENAI_BASE_URL: Final = "https://api.openai.com/v1"
#: Azure's GA (``/openai/v1``) path, used unless an API version asks for the preview path.
AZURE_GA_PATH: Final = "/openai/v1/realtime"
AZURE_PREVIEW_PATH: Final = "/openai/realtime"
#: Hosts whose key goes in the ``api-key`` header rather than ``Authorization: Bearer``.
_AZURE_HOST_SUFFIXES: Final = (
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
)


class EndpointError(ValueError):
    """The endpoint arguments or environment do not describe a usable endpoint."""


@dataclass(frozen=True)
class Endpoint:
    """A resolved endpoint. ``url`` and ``headers`` may hold credentials: ``repr`` shows
    :attr:`display_url` and no headers."""

    kind: str  # "openai" | "azure" | "url" | "local"
    url: str = field(repr=False)
    label: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    model: str | None = None

    def __repr__(self) -> str:
        return (
            f"Endpoint(kind={self.kind!r}, url={self.display_url!r}, label={self.label!r}, "
            f"model={self.model!r})"
        )

    @property
    def display_url(self) -> str:
        """The URL to show, log and record: user info and every query value but the harmless
        ones (``model``, ``deployment``, ``api-version``...) masked (see :func:`safe_url`)."""
        return safe_url(self.url) or ""


def _ws_scheme(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise EndpointError(
            f"endpoint URL must start with ws://, wss://, http:// or https://, got "
            f"{safe_url(url) or ''!r}"
        )
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for k, v in params.items():
        query.setdefault(k, v)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _is_azure_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host.endswith(_AZURE_HOST_SUFFIXES)


def resolve_endpoint(
    model: str,
    *,
    url: str | None = None,
    api_key: str | None = None,
    azure_endpoint: str | None = None,
    azure_deployment: str | None = None,
    api_version: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Endpoint | None:
    """The endpoint the arguments and environment describe, or ``None`` for the local backend.

    Precedence: an explicit ``url`` (a gateway, the local server; ``api_key`` sent as
    ``Authorization: Bearer``, or ``api-key`` for Azure hosts); explicit Azure arguments; an
    explicit ``api_key`` (OpenAI); ``OPENAI_API_KEY`` (with ``OPENAI_BASE_URL``);
    ``AZURE_OPENAI_ENDPOINT`` + ``AZURE_OPENAI_API_KEY`` (+ ``AZURE_OPENAI_DEPLOYMENT``,
    ``AZURE_OPENAI_API_VERSION``/``OPENAI_API_VERSION``). Nothing found: ``None``.

    Raises:
        EndpointError: a URL with an unsupported scheme, or Azure settings without a key or a
            deployment; the message names what is missing and never contains the key.
    """
    e = os.environ if env is None else env
    if url:
        ws = _ws_scheme(url)
        if "model=" not in urlsplit(ws).query and not _is_azure_host(ws):
            ws = _with_query(ws, model=model)
        headers: dict[str, str] = {}
        if api_key:
            headers = (
                {"api-key": api_key}
                if _is_azure_host(ws)
                else {"Authorization": f"Bearer {api_key}"}
            )
        # The URL is the user's: any query value not known to be harmless, and its user info,
        # may be a credential (see _redact.SAFE_QUERY_PARAMS).
        secrets = searchable([api_key, *url_secrets(ws), *header_secrets(headers)])
        host = urlsplit(ws).hostname or safe_url(ws) or ""
        is_loopback = host in ("127.0.0.1", "localhost", "::1")
        label = f"local server at {host}:{urlsplit(ws).port}" if is_loopback else host
        return Endpoint("url", ws, label, headers, secrets, model)

    az_endpoint = azure_endpoint or (None if api_key else e.get("AZURE_OPENAI_ENDPOINT"))
    use_azure = bool(azure_endpoint or azure_deployment) or (
        not api_key and not e.get("OPENAI_API_KEY") and bool(az_endpoint)
    )
    if use_azure:
        key = api_key or e.get("AZURE_OPENAI_API_KEY")
        deployment = (
            azure_deployment
            or e.get("AZURE_OPENAI_DEPLOYMENT")
            or e.get("AZURE_OPENAI_DEPLOYMENT_NAME")
            or model
        )
        if not az_endpoint:
            raise EndpointError(
                "Azure OpenAI needs an endpoint: pass azure_endpoint='https://<resource>."
                "openai.azure.com' or set AZURE_OPENAI_ENDPOINT"
            )
        if not key:
            raise EndpointError(
                "Azure OpenAI needs a key: pass api_key=... or set AZURE_OPENAI_API_KEY"
            )
        version = api_version or e.get("AZURE_OPENAI_API_VERSION") or e.get("OPENAI_API_VERSION")
        base = _ws_scheme(az_endpoint if "://" in az_endpoint else f"https://{az_endpoint}")
        parts = urlsplit(base)
        if version:
            path, query = AZURE_PREVIEW_PATH, {"api-version": version, "deployment": deployment}
        else:
            path, query = AZURE_GA_PATH, {"model": deployment}
        ws = urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))
        return Endpoint(
            "azure",
            ws,
            f"Azure OpenAI {deployment}",
            {"api-key": key},
            searchable([key]),
            deployment,
        )

    key = api_key or e.get("OPENAI_API_KEY")
    if key:
        base = (e.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/")
        ws = _with_query(_ws_scheme(base) + "/realtime", model=model)
        default_host = urlsplit(OPENAI_BASE_URL).hostname
        oa_host = urlsplit(ws).hostname
        label = f"OpenAI {model}" if oa_host == default_host else f"{oa_host} ({model})"
        headers = {"Authorization": f"Bearer {key}"}
        return Endpoint("openai", ws, label, headers, searchable([key]), model)
    return None
