"""x-agent-id comes only from a source Envoy verified: a jwt_authn-verified claim or the
mTLS peer certificate. Client-supplied copies never survive.

These deployments verify identity in Envoy itself, so they run the filter without the
authz-service (the shipped config minus its ext_authz filter)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from harness import MCP_CLUSTER, connection_manager, request, start_gateway, start_mcp_server, without_ext_authz

from e2e.helpers import echoed_headers, modern_call, values

ISSUER = "https://issuer.test"
AUDIENCE = "https://gateway.test/mcp"


def http_filters(config):
    hcm = connection_manager(config)
    return hcm["http_filters"]


@pytest.fixture(scope="module")
def signing_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(key, **claims):
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def jwt_gateway(logs, echo, signing_key):
    envoy, port = start_jwt_gateway(logs, echo, signing_key)
    yield port
    envoy.stop()


def start_jwt_gateway(logs, upstream: int, signing_key):
    """The filter alone behind Envoy's jwt_authn (no authz-service), in front of
    `upstream`."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update(kid="k1", alg="RS256", use="sig")

    def add_jwt_authn(config):
        http_filters(config).insert(
            0,
            {
                "name": "envoy.filters.http.jwt_authn",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                    "providers": {
                        "agents": {
                            "issuer": ISSUER,
                            "audiences": [AUDIENCE],
                            "local_jwks": {"inline_string": json.dumps({"keys": [jwk]})},
                            "payload_in_metadata": "jwt_payload",
                        }
                    },
                    "rules": [
                        {
                            "match": {"prefix": "/"},
                            "requires": {
                                "requires_any": {
                                    "requirements": [{"provider_name": "agents"}, {"allow_missing": {}}]
                                }
                            },
                        }
                    ],
                },
            },
        )

    return start_gateway(
        logs,
        {MCP_CLUSTER: upstream},
        filter_overrides={
            "agent_identity": {"source": "jwt_authn", "payload_in_metadata": "jwt_payload", "claim": "azp"}
        },
        mutate=lambda config: (without_ext_authz(config), add_jwt_authn(config)),
    )


def test_agent_from_verified_jwt_claim(jwt_gateway, signing_key):
    body, headers = modern_call("get_account_balance", auth=False)
    bearer = token(signing_key, sub="user-42", azp="agent-prod-001")
    response = request(
        jwt_gateway, "POST", "/mcp", body,
        headers + [("authorization", f"Bearer {bearer}"), ("x-agent-id", "admin"), ("x-agent-id", "root")],
    )
    assert response.status == 200, response.body
    assert values(echoed_headers(response), "x-agent-id") == ["agent-prod-001"]


def test_lists_pass_unfiltered_without_the_authz_service(logs, signing_key):
    """No ext_authz, so no decision to filter lists by: the deployment switches list
    filtering off (harness.without_ext_authz) and the server's tools/list passes as it
    is (with filtering on, every entry would be hidden)."""
    server, mcp_port = start_mcp_server(logs, logs / "jwt-mcp-headers.jsonl")
    try:
        envoy, port = start_jwt_gateway(logs, mcp_port, signing_key)
        try:
            _, headers = modern_call("get_account_balance", auth=False)
            headers = [(k, "tools/list" if k == "mcp-method" else v) for k, v in headers if k != "mcp-name"]
            meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}})
            bearer = token(signing_key, sub="user-42", azp="agent-prod-001")
            response = request(port, "POST", "/mcp", body, headers + [("authorization", f"Bearer {bearer}")])
        finally:
            envoy.stop()
    finally:
        server.stop()
    assert response.status == 200, response.body
    names = {tool["name"] for tool in response.json()["result"]["tools"]}
    assert {"get_account_balance", "transfer_funds"} <= names, response.body


def test_no_token_means_no_agent_header(jwt_gateway):
    body, headers = modern_call("get_account_balance", auth=False)
    response = request(jwt_gateway, "POST", "/mcp", body, headers + [("x-agent-id", "admin")])
    assert response.status == 200, response.body
    assert values(echoed_headers(response), "x-agent-id") == []


def test_forged_token_never_reaches_the_server(jwt_gateway):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body, headers = modern_call("get_account_balance", auth=False)
    response = request(
        jwt_gateway, "POST", "/mcp", body,
        headers + [("authorization", f"Bearer {token(forger, azp='admin')}")],
    )
    assert response.status == 401
    assert b"upstream" not in response.body


def _cert(subject, issuer_name, public_key, signer, *, ca=False, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate whose URI SAN
    is a SPIFFE id."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", "test-ca", ca_key.public_key(), ca_key, ca=True)
    files = {}

    def write(name, cert, key):
        files[f"{name}.crt"] = tmp_path / f"{name}.crt"
        files[f"{name}.key"] = tmp_path / f"{name}.key"
        files[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    files["ca.crt"] = tmp_path / "ca.crt"
    files["ca.crt"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("gateway", "test-ca", server_key.public_key(), ca_key,
                   san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    write("server", server, server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("agent", "test-ca", client_key.public_key(), ca_key,
                   san=[x509.UniformResourceIdentifier("spiffe://demo.test/agent/reconciler")])
    write("client", client, client_key)
    return files


def test_agent_from_mtls_peer_certificate(logs, echo, pki):
    def require_client_cert(config):
        chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": True,
                "common_tls_context": {
                    "tls_certificates": [
                        {
                            "certificate_chain": {"filename": str(pki["server.crt"])},
                            "private_key": {"filename": str(pki["server.key"])},
                        }
                    ],
                    "validation_context": {"trusted_ca": {"filename": str(pki["ca.crt"])}},
                },
            },
        }

    envoy, port = start_gateway(
        logs, {MCP_CLUSTER: echo},
        filter_overrides={"agent_identity": {"source": "peer_certificate_uri_san"}},
        mutate=lambda config: (without_ext_authz(config), require_client_cert(config)),
    )
    try:
        tls = ssl.create_default_context(cafile=str(pki["ca.crt"]))
        tls.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
        body, headers = modern_call("query_transactions", auth=False)
        response = request(port, "POST", "/mcp", body, headers + [("x-agent-id", "admin")], tls=tls)
        assert response.status == 200, response.body
        assert values(echoed_headers(response), "x-agent-id") == ["spiffe://demo.test/agent/reconciler"]
    finally:
        envoy.stop()
