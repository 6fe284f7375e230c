import pydantic
import pytest
from clientkit import CANARY

from splendor_api import ConfigError, SplendorConfig, tenant_of_api_key

TENANT_KEY = "spltk.v1.YWNtZQ.EXAMPLE-secret-shown-once"


def test_from_env_reads_the_three_variables() -> None:
    config = SplendorConfig.from_env(
        {
            "SPLENDOR_API_BASE": "http://127.0.0.1:8765/",
            "SPLENDOR_TENANT_ID": "acme",
            "SPLENDOR_TOKEN": CANARY,
        }
    )
    assert config.api_base == "http://127.0.0.1:8765"
    assert config.tenant_id == "acme"
    assert config.token.get_secret_value() == CANARY


def test_from_env_defaults_the_api_base() -> None:
    config = SplendorConfig.from_env({"SPLENDOR_TENANT_ID": "acme", "SPLENDOR_TOKEN": CANARY})
    assert config.api_base == "https://api.withsplendor.com"


def test_from_env_names_a_missing_token() -> None:
    with pytest.raises(ConfigError, match="SPLENDOR_TOKEN"):
        SplendorConfig.from_env({"SPLENDOR_TENANT_ID": "acme"})


def test_from_env_names_a_missing_tenant() -> None:
    with pytest.raises(ConfigError, match="SPLENDOR_TENANT_ID") as caught:
        SplendorConfig.from_env({"SPLENDOR_TOKEN": CANARY, "SPLENDOR_TENANT_ID": "  "})
    assert CANARY not in str(caught.value)


def test_from_env_reports_bad_values_without_the_token() -> None:
    with pytest.raises(ConfigError, match="api_base") as caught:
        SplendorConfig.from_env(
            {"SPLENDOR_API_BASE": "ftp://x", "SPLENDOR_TENANT_ID": "a", "SPLENDOR_TOKEN": CANARY}
        )
    assert CANARY not in str(caught.value)


def test_tenant_api_key_needs_no_tenant() -> None:
    config = SplendorConfig.from_env({"SPLENDOR_TOKEN": TENANT_KEY})
    assert config.tenant_id is None
    assert config.is_tenant_api_key
    assert config.key_tenant_id == "acme"
    assert config.effective_tenant_id == "acme"


def test_tenant_is_required_for_other_tokens() -> None:
    with pytest.raises(pydantic.ValidationError, match="tenant_id") as caught:
        SplendorConfig(token=CANARY)
    assert CANARY not in str(caught.value)


def test_platform_key_still_needs_the_tenant() -> None:
    with pytest.raises(pydantic.ValidationError, match="tenant_id"):
        SplendorConfig(token="splpk.v1.cG9vbC1kYXk.EXAMPLE-secret-shown-once")


def test_invalid_field_errors_never_echo_the_token() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        SplendorConfig(token=CANARY, tenant_id="acme", max_attempts=0)
    assert "max_attempts" in str(caught.value)
    assert CANARY not in str(caught.value)


def test_repr_and_str_hide_the_token() -> None:
    config = SplendorConfig(token=CANARY, tenant_id="acme")
    for text in (repr(config), str(config), f"{config}", config.model_dump_json()):
        assert CANARY not in text


def test_defaults() -> None:
    config = SplendorConfig(token=CANARY, tenant_id="acme")
    assert (config.connect_timeout, config.read_timeout) == (5.0, 30.0)
    assert (config.max_attempts, config.max_retry_seconds, config.max_concurrency) == (6, 120.0, 32)


@pytest.mark.parametrize(
    ("token", "tenant"),
    [
        (TENANT_KEY, "acme"),
        ("spltk.v1.dC0zZjljMmExYjdlNGQ4YzZh.secret", "t-3f9c2a1b7e4d8c6a"),
        ("spltk.v1.!!!.secret", None),
        ("spltk.v1.", None),
        ("splpk.v1.cG9vbC1kYXk.secret", None),
        ("opaque", None),
    ],
)
def test_tenant_of_api_key(token: str, tenant: str | None) -> None:
    assert tenant_of_api_key(token) == tenant
