"""The key-checking gateway in front of the Azure ML inference server: a Caddy JSON configuration.

The inference server has no authentication, so an ACI container group runs Caddy next to it. Caddy
accepts a request only with `Authorization: Bearer <key>`, removes that header and proxies to the
server on localhost:5001; anything else gets 401. The configuration holds the key, so it reaches the
container as a secret volume. Caddy's admin API is off (the scoring code shares the group's network).

The generated document is what the deployer ships and what tests/aci run with the real `caddy`; only
the addresses are parameters (tests listen on loopback ports and point the upstream at a local server).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

UPSTREAM = "localhost:5001"
CONFIG_FILE = "caddy.json"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
UNAUTHORIZED_BODY = '{"error": "missing or wrong key: send the header Authorization: Bearer <key>"}'


@dataclass(frozen=True)
class Tls:
    """HTTPS for `domain` (a name you point at the group's FQDN with a CNAME): with the certificate files
    given (PEM, mounted from the secret volume), or else a certificate Caddy obtains from Let's Encrypt."""

    domain: str
    certificate_file: str | None = None
    key_file: str | None = None
    email: str | None = None


def caddy_config(key: str | None, *, upstream: str = UPSTREAM, http_port: int = 80, https_port: int = 443,
                 host: str = "", tls: Tls | None = None) -> dict[str, Any]:
    """The Caddy configuration: key check (when `key` is set) and reverse proxy to `upstream`.

    `host` binds the listeners to one address ("" = all, as in the container); `http_port`/`https_port`
    are the ports the gateway listens on (80/443 in the container)."""
    if key is not None:
        _check_key(key)
    routes = _routes(key, upstream)
    if tls is None:
        server = {"listen": [f"{host}:{http_port}"], "routes": routes, "automatic_https": {"disable": True}}
    else:
        server = {"listen": [f"{host}:{https_port}"],
                  "routes": [{"match": [{"host": [tls.domain]}],
                              "handle": [{"handler": "subroute", "routes": routes}], "terminal": True}]}
    http: dict[str, Any] = {"http_port": http_port, "https_port": https_port, "servers": {"gateway": server}}
    # persist False: Caddy would otherwise autosave the whole configuration, key included, to disk.
    config: dict[str, Any] = {"admin": {"disabled": True, "config": {"persist": False}}, "apps": {"http": http}}
    if tls is not None:
        config["apps"]["tls"] = _tls_app(tls)
    return config


def caddy_config_text(key: str | None, **kwargs: Any) -> str:
    return json.dumps(caddy_config(key, **kwargs), indent=1, sort_keys=True)


def _check_key(key: str) -> None:
    # Caddy's header matcher treats '*' at either end as a wildcard and expands {placeholders}: a key
    # must be plain text so that only the exact value matches.
    if len(key) < 32 or any(c in key for c in "*{}\\\"' \t\r\n"):
        raise ValueError("a gateway key must be at least 32 characters of [A-Za-z0-9_-]")


def _routes(key: str | None, upstream: str) -> list[dict[str, Any]]:
    proxy = {"handler": "reverse_proxy", "upstreams": [{"dial": upstream}],
             "headers": {"request": {"delete": ["Authorization"]}}}
    if key is None:
        return [{"handle": [proxy]}]
    unauthorized = {"handler": "static_response", "status_code": 401, "body": UNAUTHORIZED_BODY,
                    "headers": {"Www-Authenticate": ['Bearer realm="amlops"'],
                                "Content-Type": ["application/json"]}}
    authorized = {"header": {"Authorization": [f"Bearer {key}", f"bearer {key}"]}}
    return [{"match": [authorized], "handle": [proxy], "terminal": True},
            {"handle": [unauthorized], "terminal": True}]


def _tls_app(tls: Tls) -> dict[str, Any]:
    if tls.certificate_file:
        return {"certificates": {"load_files": [{"certificate": tls.certificate_file, "key": tls.key_file}]}}
    issuer: dict[str, Any] = {"module": "acme"}
    if tls.email:
        issuer["email"] = tls.email
    return {"automation": {"policies": [{"subjects": [tls.domain], "issuers": [issuer]}]}}
