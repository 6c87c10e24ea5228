"""AzureRM service connections (`ENDPOINT_*` as the agent exports them) -> azure-identity credentials.

No test reaches Entra: credentials are built (which parses certificates) and, for workload identity
federation, the OIDC token request goes to a fake System.OidcRequestUri on loopback.
"""
from __future__ import annotations

import datetime
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from amlops.devops import endpoint, secrets
from amlops.errors import AmlopsError
from devops_agent import Connection, service_principal

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"


def test_service_principal_secret(monkeypatch) -> None:
    connection = service_principal("s3cr3t-value")
    parsed = endpoint.read_connection(connection.id, connection.environment())
    assert (parsed.scheme, parsed.tenant_id, parsed.client_id) == ("ServicePrincipal", TENANT, CLIENT)
    assert parsed.subscription_id == "00000000-1111-2222-3333-444444444444"
    assert parsed.authority_host == "login.microsoftonline.com"
    from azure.identity import ClientSecretCredential

    assert isinstance(endpoint.make_credential(parsed, {}), ClientSecretCredential)


def test_names_are_matched_ignoring_case() -> None:
    connection = service_principal("abc12345")
    env = {key.lower(): value for key, value in connection.environment().items()}
    assert endpoint.read_connection(connection.id.upper(), env).client_id == CLIENT


def test_single_parameter_variables_override_the_json_object() -> None:
    connection = service_principal("from-json")
    env = connection.environment()
    env[f"ENDPOINT_AUTH_PARAMETER_{connection.id}_SERVICEPRINCIPALKEY"] = "from-variable"
    assert endpoint.read_connection(connection.id, env).parameters["SERVICEPRINCIPALKEY"] == "from-variable"


@pytest.mark.parametrize("cloud, authority, arm", [
    ("AzureChinaCloud", "login.chinacloudapi.cn", "https://management.chinacloudapi.cn/"),
    ("AzureUSGovernment", "login.microsoftonline.us", "https://management.usgovcloudapi.net/"),
    ("azurecloud", "login.microsoftonline.com", "https://management.azure.com/"),
])
def test_sovereign_clouds_set_the_authority(cloud: str, authority: str, arm: str) -> None:
    connection = service_principal("abc12345")
    connection.data["environment"] = cloud
    parsed = endpoint.read_connection(connection.id, connection.environment())
    assert (parsed.authority_host, parsed.resource_manager) == (authority, arm)
    credential = endpoint.make_credential(parsed, {})
    assert credential._authority == f"https://{authority}"  # what MSAL will call


def test_unsupported_cloud_and_scope_are_actionable() -> None:
    connection = service_principal("abc12345")
    connection.data["environment"] = "AzureGermanCloud"  # closed in 2021
    with pytest.raises(AmlopsError, match="'AZUREGERMANCLOUD' cloud"):
        endpoint.read_connection(connection.id, connection.environment())
    connection = service_principal("abc12345")
    del connection.data["subscriptionId"]
    connection.data["scopeLevel"] = "ManagementGroup"
    with pytest.raises(AmlopsError, match="scope level 'ManagementGroup'.*subscription-scoped"):
        endpoint.read_connection(connection.id, connection.environment())


def test_missing_connection_says_to_authorize_it() -> None:
    with pytest.raises(AmlopsError, match="not available to this job; authorize it"):
        endpoint.read_connection("9f0e0000-0000-0000-0000-000000000000", {})


def test_unknown_scheme_is_refused() -> None:
    connection = Connection("UsernamePassword", {"username": "u", "password": "p"})
    with pytest.raises(AmlopsError, match="'UsernamePassword' scheme"):
        endpoint.read_connection(connection.id, connection.environment())


def test_missing_secret_names_the_parameter() -> None:
    connection = service_principal("")
    parsed = endpoint.read_connection(connection.id, connection.environment())
    with pytest.raises(AmlopsError, match="lacks serviceprincipalkey"):
        endpoint.make_credential(parsed, {})


def _pem_certificate() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amlops-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return (key_pem + certificate.public_bytes(serialization.Encoding.PEM)).decode()


def test_service_principal_certificate() -> None:
    from azure.identity import CertificateCredential

    pem = _pem_certificate()
    connection = Connection("ServicePrincipal", {"tenantid": TENANT, "serviceprincipalid": CLIENT,
                                                 "authenticationType": "spnCertificate",
                                                 "servicePrincipalCertificate": pem})
    parsed = endpoint.read_connection(connection.id, connection.environment())
    assert isinstance(endpoint.make_credential(parsed, {}), CertificateCredential)
    assert pem in secrets.collect(connection.environment())


def test_unreadable_certificate_is_actionable() -> None:
    connection = Connection("ServicePrincipal", {"tenantid": TENANT, "serviceprincipalid": CLIENT,
                                                 "authenticationType": "spnCertificate",
                                                 "servicePrincipalCertificate": "not a pem"})
    parsed = endpoint.read_connection(connection.id, connection.environment())
    with pytest.raises(AmlopsError, match="certificate cannot be read"):
        endpoint.make_credential(parsed, {})


class _OidcHandler(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        _OidcHandler.seen.append((self.path, dict(self.headers)))
        body = json.dumps({"oidcToken": "fake.oidc.token"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def oidc_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OidcHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _OidcHandler.seen = []
    port = server.server_address[1]
    yield f"http://127.0.0.1:{port}/contoso/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken"
    server.shutdown()


@pytest.mark.parametrize("token_source", ["SYSTEM_ACCESSTOKEN", "SystemVssConnection"])
def test_workload_identity_federation_requests_the_oidc_token(monkeypatch, oidc_server, token_source) -> None:
    from azure.identity import AzurePipelinesCredential

    connection = Connection("WorkloadIdentityFederation", {
        "tenantid": TENANT, "serviceprincipalid": CLIENT,
        "workloadIdentityFederationSubject": "sc://contoso/mlops/arm", "workloadIdentityFederationIssuer": "x"})
    env = connection.environment() | {"SYSTEM_OIDCREQUESTURI": oidc_server}
    if token_source == "SYSTEM_ACCESSTOKEN":
        env["SYSTEM_ACCESSTOKEN"] = "job-token-1"
    else:
        env["ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN"] = "job-token-1"
    monkeypatch.setenv("SYSTEM_OIDCREQUESTURI", oidc_server)  # azure-identity reads it from os.environ
    parsed = endpoint.read_connection(connection.id, env)
    credential = endpoint.make_credential(parsed, env)
    assert isinstance(credential, AzurePipelinesCredential)
    assert credential._get_oidc_token() == "fake.oidc.token"  # the step before Entra, which is not reached
    path, headers = _OidcHandler.seen[-1]
    query = parse_qs(urlparse(path).query)
    assert query == {"api-version": ["7.1"], "serviceConnectionId": [connection.id]}
    headers = {key.lower(): value for key, value in headers.items()}
    assert headers["authorization"] == "Bearer job-token-1"
    assert headers["x-tfs-fedauthredirect"] == "Suppress"


def test_workload_identity_without_oidc_uri_or_token_is_actionable() -> None:
    connection = Connection("WorkloadIdentityFederation", {"tenantid": TENANT, "serviceprincipalid": CLIENT})
    parsed = endpoint.read_connection(connection.id, connection.environment())
    with pytest.raises(AmlopsError, match="System.OidcRequestUri"):
        endpoint.make_credential(parsed, {})
    with pytest.raises(AmlopsError, match="job access token"):
        endpoint.make_credential(parsed, {"SYSTEM_OIDCREQUESTURI": "http://127.0.0.1:9/x"})


def test_managed_identity() -> None:
    from azure.identity import ManagedIdentityCredential

    connection = Connection("ManagedServiceIdentity", {"tenantid": TENANT})
    parsed = endpoint.read_connection(connection.id, connection.environment())
    assert isinstance(endpoint.make_credential(parsed, {}), ManagedIdentityCredential)


def test_secrets_are_collected_and_scrubbed_but_ids_are_not() -> None:
    connection = service_principal("sp-secret-value-123")
    env = connection.environment() | {"SECRET_DB": "db-password-456", "SYSTEM_ACCESSTOKEN": "tok-789-abcdef",
                                      "INPUT_SCORINGKEY": "scoring-key-000", "PATH": "/usr/bin",
                                      "OTHER": "contains sp-secret-value-123 inside"}
    found = secrets.collect(env, ["scoringKey"])
    assert {"sp-secret-value-123", "db-password-456", "tok-789-abcdef", "scoring-key-000"} <= set(found)
    assert TENANT not in found and CLIENT not in found
    removed = secrets.scrub(env, found, ["scoringKey"])
    assert "OTHER" in removed and "PATH" in env
    assert not any(key.startswith(("ENDPOINT_AUTH", "SECRET_")) for key in env)
    assert "SYSTEM_ACCESSTOKEN" not in env and "INPUT_SCORINGKEY" not in env
    assert f"ENDPOINT_URL_{connection.id}" in env
