"""A loopback fake of the Key Vault secrets API for azure-keyvault-secrets, with the vault's RBAC rules.

A real HTTPS server on 127.0.0.1 answering as a vault with `enableRbacAuthorization` does
(https://learn.microsoft.com/rest/api/keyvault/secrets, https://learn.microsoft.com/azure/key-vault/general/rbac-guide):

* a request without a token gets 401 and the vault's challenge (`WWW-Authenticate: Bearer authorization=...,
  resource="https://vault.azure.net"` in Azure's public cloud), from which the SDK learns the tenant and the
  token's audience (it checks that the vault's host ends in that domain, so tests reach the fake as
  <name>.vault.azure.net);
* a token with another audience gets 401; a caller without a data role gets 403 Forbidden/ForbiddenByRbac:
  "Key Vault Secrets User" (`reader_oids`) may only read, "Key Vault Secrets Officer" (`officer_oids`) may
  set, read, delete and recover; no Azure Resource Manager role opens the data plane;
* secret names are 1-127 of [0-9a-zA-Z-] (400 BadParameter otherwise);
* soft delete: a deleted secret stays in `deleted` and its name cannot be set again (409 Conflict,
  ObjectIsDeletedButRecoverable) until it is recovered or purged
  (https://learn.microsoft.com/azure/key-vault/general/soft-delete-overview).

`writes` keeps the name of every secret set (values are in `secrets` only).
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from fake_arm import https_server, json_handler

RESOURCE = "https://vault.azure.net"
NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
SECRET = re.compile(r"^/secrets/([^/]+)/?([^/]*)$")
DELETED = re.compile(r"^/deletedsecrets/([^/]+)(/recover)?$")
READ, WRITE = "Microsoft.KeyVault/vaults/secrets/getSecret/action", "Microsoft.KeyVault/vaults/secrets/setSecret/action"
DELETE, RECOVER = "Microsoft.KeyVault/vaults/secrets/delete", "Microsoft.KeyVault/vaults/secrets/recover/action"


class FakeKeyVault:
    def __init__(self, certificate: Path, private_key: Path, tenant: str, officer_oids: set[str], host: str,
                 resource: str = RESOURCE):
        self.tenant, self.host, self.resource = tenant, host, resource
        self.officer_oids, self.reader_oids = set(officer_oids), set()
        self.secrets: dict[str, dict] = {}
        self.deleted: dict[str, dict] = {}
        self.writes: list[str] = []
        self.lock = threading.RLock()
        self.server = https_server(json_handler(self.handle), certificate, private_key)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://{self.host}/"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "FakeKeyVault":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # requests

    def handle(self, method: str, path: str, query: dict, headers: Any, body: Any) -> tuple[int, Any, dict]:
        if not query.get("api-version"):
            return 400, _error("BadParameter", "api-version is required"), {}
        claims = _claims(headers.get("Authorization") or "")
        if claims is None or claims.get("aud", "").rstrip("/") != self.resource:
            challenge = f'Bearer authorization="https://login.example.test/{self.tenant}", resource="{self.resource}"'
            return 401, _error("Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."), \
                {"WWW-Authenticate": challenge}
        oid = claims.get("oid", "")
        if match := SECRET.match(path):
            name = match.group(1)
            if method == "PUT":
                return self._allowed(oid, WRITE, name) or self._set(name, body or {})
            if method == "GET":
                return self._allowed(oid, READ, name) or self._get(name)
            if method == "DELETE":
                return self._allowed(oid, DELETE, name) or self._delete(name)
        if match := DELETED.match(path):
            name = match.group(1)
            if method == "POST" and match.group(2):
                return self._allowed(oid, RECOVER, name) or self._recover(name)
            if method == "GET":
                return self._allowed(oid, READ, name) or self._get_deleted(name)
        return 404, _error("NotFound", f"no route {method} {path}"), {}

    def _allowed(self, oid: str, action: str, name: str) -> tuple[int, Any, dict] | None:
        if oid in self.officer_oids or (action == READ and oid in self.reader_oids):
            return None
        message = (f"Caller is not authorized to perform action on resource.\r\nCaller: oid={oid}\r\n"
                   f"Action: '{action}'\r\nResource: 'secrets/{name}'")
        return 403, {"error": {"code": "Forbidden", "message": message,
                               "innererror": {"code": "ForbiddenByRbac"}}}, {}

    def _set(self, name: str, body: dict) -> tuple[int, Any, dict]:
        if not NAME.match(name):
            return 400, _error("BadParameter", "The request URI contains an invalid name: " + name), {}
        with self.lock:
            if name in self.deleted:
                return 409, {"error": {"code": "Conflict", "message": f"Secret {name} is currently in a deleted but "
                                       "recoverable state, and its name cannot be reused; in this state, the secret "
                                       "can only be recovered or purged.",
                                       "innererror": {"code": "ObjectIsDeletedButRecoverable"}}}, {}
            now = int(time.time())
            bundle = {"value": body.get("value", ""), "id": f"{self.url}secrets/{name}/{uuid.uuid4().hex}",
                      "attributes": {"enabled": True, "created": now, "updated": now,
                                     "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}}
            bundle.update({k: body[k] for k in ("contentType", "tags") if k in body})
            self.secrets[name] = bundle
            self.writes.append(name)
        return 200, bundle, {}

    def _get(self, name: str) -> tuple[int, Any, dict]:
        bundle = self.secrets.get(name)
        if bundle is None:
            return 404, _error("SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."), {}
        return 200, bundle, {}

    def _delete(self, name: str) -> tuple[int, Any, dict]:
        with self.lock:
            bundle = self.secrets.pop(name, None)
            if bundle is None:
                return 404, _error("SecretNotFound", f"A secret with (name/id) {name} was not found."), {}
            self.deleted[name] = bundle
        return 200, self._deleted_view(name, bundle), {}

    def _get_deleted(self, name: str) -> tuple[int, Any, dict]:
        bundle = self.deleted.get(name)
        if bundle is None:
            return 404, _error("SecretNotFound", f"Deleted Secret not found: {name}"), {}
        return 200, self._deleted_view(name, bundle), {}

    def _recover(self, name: str) -> tuple[int, Any, dict]:
        with self.lock:
            bundle = self.deleted.pop(name, None)
            if bundle is None:
                return 404, _error("SecretNotFound", f"Deleted Secret not found: {name}"), {}
            self.secrets[name] = bundle
        return 200, {k: v for k, v in bundle.items() if k != "value"}, {}

    def _deleted_view(self, name: str, bundle: dict) -> dict:
        now = int(time.time())
        view = {k: v for k, v in bundle.items() if k != "value"}
        return {**view, "recoveryId": f"{self.url}deletedsecrets/{name}", "deletedDate": now,
                "scheduledPurgeDate": now + 90 * 86400}


def _claims(authorization: str) -> dict | None:
    if not authorization.startswith("Bearer "):
        return None
    try:
        payload = authorization.split(" ", 1)[1].split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}
