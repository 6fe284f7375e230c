"""Authentication, tenancy and roles (§2.1, §2.2)."""

import httpx

from splendor_emulator import Emulator

from .conftest import ClientFactory
from .helpers import ADMIN, API_KEY, GLOBEX, MEMBER, connected_source, source_body

PROVIDERS = "/v1/admin/connector-providers"


def test_missing_or_unknown_token_is_401(client_for: ClientFactory) -> None:
    for token in (None, "nope", "spltk.v1.YWNtZQ.wrong-secret", "sit_live_0000"):
        response = client_for(token).get(PROVIDERS)
        assert response.status_code == 401, token
        assert isinstance(response.json()["detail"], str)
    assert client_for(None).get("/v1/me").status_code == 401


def test_malformed_authorization_header_is_401(emu: Emulator) -> None:
    response = httpx.get(
        f"{emu.base_url}{PROVIDERS}", headers={"Authorization": "Basic abc", "X-Splendor-Tenant-Id": "acme"}
    )
    assert response.status_code == 401


def test_missing_tenant_header_is_400(client_for: ClientFactory) -> None:
    response = client_for(ADMIN, tenant=None).get(PROVIDERS)
    assert response.status_code == 400
    assert "X-Splendor-Tenant-Id" in response.json()["detail"]


def test_tenant_header_is_case_insensitive(emu: Emulator) -> None:
    headers = {"authorization": f"Bearer {ADMIN}", "x-splendor-tenant-id": "acme"}
    assert httpx.get(f"{emu.base_url}{PROVIDERS}", headers=headers).status_code == 200


def test_other_or_unknown_tenant_is_403(client_for: ClientFactory) -> None:
    assert client_for(ADMIN, tenant="globex").get(PROVIDERS).status_code == 403
    assert client_for(ADMIN, tenant="initech").get(PROVIDERS).status_code == 403


def test_member_on_growth_plan_cannot_use_admin_routes(client_for: ClientFactory) -> None:
    member = client_for(MEMBER)
    assert member.get(PROVIDERS).status_code == 403
    assert member.post("/v1/admin/airbyte-sources", json=source_body()).status_code == 403
    # members may read sources and ingest runs
    assert member.get("/v1/admin/sources").status_code == 200
    assert member.get("/v1/ingest/runs").status_code == 200


def test_member_on_standard_plan_acts_as_admin(client_for: ClientFactory) -> None:
    globex = client_for(GLOBEX, tenant="globex")
    assert globex.get(PROVIDERS).status_code == 200
    body = source_body("globex-stripe") | {"bucket": "globex-connectors"}
    assert globex.post("/v1/admin/airbyte-sources", json=body).status_code == 200


def test_me_reports_roles_plans_and_rbac(client_for: ClientFactory) -> None:
    me = client_for(MEMBER, tenant=None).get("/v1/me").json()
    assert me["tenants"] == [
        {
            "tenant_id": "acme",
            "name": "Acme Corp",
            "role": "Member",
            "is_admin": False,
            "plan": "growth",
            "rbac_enabled": True,
            "propelauth_org_id": "org_acme",
        }
    ]
    globex = client_for(GLOBEX, tenant=None).get("/v1/me").json()["tenants"][0]
    assert (globex["role"], globex["is_admin"], globex["plan"], globex["rbac_enabled"]) == (
        "Member",
        True,
        "standard",
        False,
    )
    admin = client_for(ADMIN, tenant=None).get("/v1/me").json()
    assert admin["user_id"] == "user_acme_admin" and admin["tenants"][0]["is_admin"] is True


def test_tenant_api_key_needs_no_header_and_is_bound_to_its_tenant(client_for: ClientFactory) -> None:
    key = client_for(API_KEY, tenant=None)
    assert key.get(PROVIDERS).status_code == 200
    assert key.post("/v1/admin/airbyte-sources", json=source_body()).status_code == 200
    assert client_for(API_KEY, tenant="acme").get(PROVIDERS).status_code == 200
    assert client_for(API_KEY, tenant="globex").get(PROVIDERS).status_code == 403
    me = key.get("/v1/me").json()
    assert me["tenants"][0]["tenant_id"] == "acme" and me["tenants"][0]["is_admin"] is True
    # machine keys cannot mint further keys; a real admin can, and the new key works
    assert key.post("/v1/admin/api-keys", json={"name": "ci"}).status_code == 403
    minted = client_for(ADMIN).post("/v1/admin/api-keys", json={"name": "ci"})
    assert minted.status_code == 200
    token = minted.json()["token"]
    assert token.startswith("spltk.v1.YWNtZQ.")
    assert client_for(token, tenant=None).get(PROVIDERS).status_code == 200


def test_other_tenants_ids_are_404(client_for: ClientFactory) -> None:
    source_id = connected_source(client_for(ADMIN))
    run_id = client_for(ADMIN).post(f"/v1/admin/airbyte-sources/{source_id}/sync").json()["run"]["run_id"]
    globex = client_for(GLOBEX, tenant="globex")
    assert globex.get(f"/v1/admin/airbyte-sources/{source_id}").status_code == 404
    assert globex.post(f"/v1/admin/airbyte-sources/{source_id}/sync").status_code == 404
    assert globex.post(f"/v1/admin/airbyte-runs/{run_id}/refresh").status_code == 404
    assert globex.put(f"/v1/admin/sources/{source_id}", json={"name": "x"}).status_code == 404
    assert globex.get("/v1/admin/sources").json() == {"sources": []}


def test_platform_key_acts_in_its_child_tenants() -> None:
    from splendor_emulator import running_emulator
    from splendor_emulator.config import PlatformKeyConfig

    from .helpers import fast_config

    key = "splpk.v1.cG9vbC1kYXk.local-platform-key"
    with running_emulator(
        fast_config(platform_keys=[PlatformKeyConfig(token=key, tenants=["globex"])])
    ) as emu:

        def get(tenant: str | None) -> int:
            headers = {"Authorization": f"Bearer {key}"} | (
                {"X-Splendor-Tenant-Id": tenant} if tenant else {}
            )
            return httpx.get(f"{emu.base_url}{PROVIDERS}", headers=headers).status_code

        assert (get("globex"), get("acme"), get(None)) == (200, 403, 400)


async def test_async_variant_serves_without_blocking_the_loop() -> None:
    from splendor_emulator import running_emulator_async

    from .helpers import fast_config

    async with running_emulator_async(fast_config()) as emu:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=emu.base_url, headers=headers) as client:
            me = await client.get("/v1/me")
            assert me.status_code == 200 and me.json()["tenants"][0]["tenant_id"] == "acme"
        assert emu.counts("GET /v1/me") == {"GET /v1/me": 1}
