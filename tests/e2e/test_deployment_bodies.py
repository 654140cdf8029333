"""Every rendered deployment shape sends the authz-service the body of the calls it
checks: argument validation and `Mcp-Param-*` comparison depend on it, and the shapes
build their routes differently (the standalone config and the live xDS files from the
Envoy target, Istio's gateway from route MERGE patches on istiod's routes, the sidecar
from its own inserted route).

The one server is financial-data (validation `report`, the default): a call that
breaks `get_account_balance`'s schema (`additionalProperties: false`) is forwarded
and audited with the place its arguments fail. Without the body the authz-service
could only report that it cannot read the arguments, and a valid call would be
flagged too."""

from __future__ import annotations

from e2e.deployments import TOOL, deployment, services  # noqa: F401 (fixtures)
from e2e.helpers import modern_call
from harness.paths import raw_request


def call(deployment, jsonrpc_id: str, arguments: dict) -> int:
    body, headers = modern_call(TOOL, jsonrpc_id, arguments)
    response = raw_request(deployment.port, "POST", "/mcp", headers, body.encode(), host=deployment.host)
    return response.status


def test_the_checked_calls_body_reaches_the_authz_service(deployment):
    bad, good = f"bad-{deployment.name}", f"good-{deployment.name}"
    assert call(deployment, bad, {"account_id": "acc-001", "extra": "x"}) == 200
    assert call(deployment, good, {"account_id": "acc-001"}) == 200
    wanted = {bad, good}
    records = deployment.audit(until=lambda rs: wanted <= {r.get("jsonrpc_id") for r in rs})
    by_id = {r["jsonrpc_id"]: r for r in records if r.get("jsonrpc_id") in wanted}
    violation = by_id[bad]["schema_violation"]
    assert violation is not None and violation.startswith("(root):"), violation
    assert "cannot be read" not in violation, violation
    assert "extra" in violation, violation
    assert by_id[good]["schema_violation"] is None, by_id[good]
