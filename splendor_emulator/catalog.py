"""The built-in provider catalog and the generator of realistic records for synced streams.

Curated providers carry hand-written connection specifications modelled on the Airbyte connectors of the
same name; the long tail is generated from a compact table so `GET /v1/admin/airbyte-catalog?q=` has
something real to search. Definition ids are stable UUIDs (uuid5 of the docker repository) so they survive
restarts and config files."""

import hashlib
import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from splendor_emulator.config import FieldSpec, FieldType, ProviderConfig, StreamConfig

_NAMESPACE = uuid.UUID("5d1f3c1e-2c55-4a8e-9b76-8f5a3e0c9d11")


def definition_id(docker_repository: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, docker_repository))


def _fields(spec: str) -> list[FieldSpec]:
    """Parse 'id:string, amount:integer, ...' into field specs (keeps the catalog table readable)."""
    out: list[FieldSpec] = []
    for item in spec.split(","):
        name, _, kind = item.strip().partition(":")
        field_type: FieldType = kind.strip() or "string"  # type: ignore[assignment]
        out.append(FieldSpec(name=name.strip(), type=field_type))
    return out


def _stream(name: str, fields: str, records: int = 40, default: bool = True) -> StreamConfig:
    return StreamConfig(name=name, fields=_fields(fields), record_count=records, default=default)


def _secret(title: str, pattern: str | None = None, description: str = "") -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "string", "title": title, "airbyte_secret": True, "minLength": 1}
    if pattern:
        prop["pattern"] = pattern
    if description:
        prop["description"] = description
    return prop


def _spec(required: list[str], properties: dict[str, Any], title: str) -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"{title} Spec",
        "type": "object",
        "required": required,
        "additionalProperties": True,
        "properties": properties,
    }


_START_DATE = {
    "type": "string",
    "title": "Start date",
    "format": "date",
    "pattern": r"^\d{4}-\d{2}-\d{2}$",
    "description": "UTC date (YYYY-MM-DD) from which to replicate data.",
}


def _curated() -> list[ProviderConfig]:
    stripe = ProviderConfig(
        provider_key="stripe",
        name="Stripe",
        source_definition_id=definition_id("airbyte/source-stripe"),
        docker_repository="airbyte/source-stripe",
        docker_image_tag="5.8.3",
        auth_mode="api_key",
        connection_specification=_spec(
            ["api_key", "account_id"],
            {
                "api_key": _secret(
                    "Secret key", r"^sk_(test|live)_", "Stripe secret key (sk_test_... or sk_live_...)."
                ),
                "account_id": {"type": "string", "title": "Account ID", "pattern": r"^acct_[A-Za-z0-9]+$"},
                "start_date": _START_DATE,
                "lookback_window_days": {"type": "integer", "minimum": 0, "maximum": 365, "default": 0},
            },
            "Stripe",
        ),
        streams=[
            _stream(
                "charges", "id, amount:integer, currency, status, customer, description, created:datetime", 60
            ),
            _stream("customers", "id, email, name, phone, created:datetime, delinquent:boolean", 30),
            _stream(
                "invoices",
                "id, customer, amount_due:integer, amount_paid:integer, status, created:datetime",
                40,
            ),
            _stream(
                "subscriptions", "id, customer, status, plan, current_period_end:datetime", 20, default=False
            ),
            _stream(
                "refunds", "id, charge, amount:integer, reason, status, created:datetime", 10, default=False
            ),
        ],
        sync_seconds=6.0,
    )
    postgres = ProviderConfig(
        provider_key="postgres",
        name="Postgres",
        source_definition_id=definition_id("airbyte/source-postgres"),
        docker_repository="airbyte/source-postgres",
        docker_image_tag="3.6.28",
        auth_mode="api_key",
        connection_specification=_spec(
            ["host", "port", "database", "username", "password"],
            {
                "host": {"type": "string", "title": "Host", "minLength": 1, "maxLength": 255},
                "port": {"type": "integer", "title": "Port", "minimum": 1, "maximum": 65535, "default": 5432},
                "database": {"type": "string", "title": "Database", "minLength": 1},
                "schemas": {"type": "array", "items": {"type": "string"}, "default": ["public"]},
                "username": {"type": "string", "title": "Username", "minLength": 1},
                "password": _secret("Password"),
                "ssl_mode": {
                    "type": "string",
                    "enum": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
                    "default": "prefer",
                },
            },
            "Postgres",
        ),
        streams=[
            _stream(
                "users", "id:integer, email, full_name, country, created_at:datetime, is_active:boolean", 50
            ),
            _stream("orders", "id:integer, user_id:integer, total:number, status, created_at:datetime", 80),
            _stream("order_items", "id:integer, order_id:integer, sku, quantity:integer, price:number", 120),
        ],
        sync_seconds=8.0,
    )
    hubspot = ProviderConfig(
        provider_key="hubspot",
        name="HubSpot",
        source_definition_id=definition_id("airbyte/source-hubspot"),
        docker_repository="airbyte/source-hubspot",
        docker_image_tag="4.4.6",
        auth_mode="api_key",
        connection_specification=_spec(
            ["credentials"],
            {
                "credentials": {
                    "type": "object",
                    "title": "Private app",
                    "required": ["credentials_title", "access_token"],
                    "properties": {
                        "credentials_title": {"type": "string", "const": "Private App Credentials"},
                        "access_token": _secret("Private app access token", r"^pat-[a-z0-9]+-"),
                    },
                },
                "start_date": _START_DATE,
            },
            "HubSpot",
        ),
        streams=[
            _stream(
                "contacts", "id, email, firstname, lastname, company, lifecyclestage, createdate:datetime", 50
            ),
            _stream(
                "companies", "id, name, domain, industry, numberofemployees:integer, createdate:datetime", 25
            ),
            _stream("deals", "id, dealname, amount:number, dealstage, pipeline, closedate:datetime", 30),
            _stream(
                "tickets", "id, subject, content, hs_pipeline_stage, createdate:datetime", 20, default=False
            ),
        ],
        sync_seconds=7.0,
    )
    zendesk = ProviderConfig(
        provider_key="zendesk-support",
        name="Zendesk Support",
        source_definition_id=definition_id("airbyte/source-zendesk-support"),
        docker_repository="airbyte/source-zendesk-support",
        docker_image_tag="4.4.2",
        auth_mode="api_key",
        connection_specification=_spec(
            ["subdomain", "email", "api_token"],
            {
                "subdomain": {"type": "string", "title": "Subdomain", "pattern": r"^[a-z0-9][a-z0-9-]*$"},
                "email": {
                    "type": "string",
                    "title": "Email",
                    "format": "email",
                    "pattern": r"^[^@\s]+@[^@\s]+$",
                },
                "api_token": _secret("API token"),
                "start_date": _START_DATE,
            },
            "Zendesk Support",
        ),
        streams=[
            _stream("tickets", "id:integer, subject, description, status, priority, created_at:datetime", 60),
            _stream(
                "ticket_comments",
                "id:integer, ticket_id:integer, body, public:boolean, created_at:datetime",
                90,
            ),
            _stream("users", "id:integer, name, email, role, created_at:datetime", 30),
            _stream("organizations", "id:integer, name, domain, created_at:datetime", 10, default=False),
        ],
        sync_seconds=6.0,
    )
    github = ProviderConfig(
        provider_key="github",
        name="GitHub",
        source_definition_id=definition_id("airbyte/source-github"),
        docker_repository="airbyte/source-github",
        docker_image_tag="1.8.20",
        auth_mode="api_key",
        connection_specification=_spec(
            ["personal_access_token", "repositories"],
            {
                "personal_access_token": _secret("Personal access token", r"^(gh[pousr]_|github_pat_)"),
                "repositories": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": r"^[\w.-]+/[\w.*-]+$"},
                },
                "start_date": _START_DATE,
            },
            "GitHub",
        ),
        streams=[
            _stream(
                "issues", "id:integer, number:integer, title, body, state, user, created_at:datetime", 50
            ),
            _stream(
                "pull_requests", "id:integer, number:integer, title, body, state, created_at:datetime", 30
            ),
            _stream("commits", "sha, message, author, url, created_at:datetime", 70, default=False),
        ],
        sync_seconds=5.0,
    )
    salesforce = ProviderConfig(
        provider_key="salesforce",
        name="Salesforce",
        source_definition_id=definition_id("airbyte/source-salesforce"),
        docker_repository="airbyte/source-salesforce",
        docker_image_tag="2.7.4",
        auth_mode="oauth",
        oauth_mode="airbyte",
        connection_specification=_spec(
            [],
            {
                "is_sandbox": {"type": "boolean", "title": "Sandbox", "default": False},
                "start_date": _START_DATE,
                "force_use_bulk_api": {"type": "boolean", "default": False},
            },
            "Salesforce",
        ),
        oauth_input_configuration={
            "type": "object",
            "properties": {"client_id": {"type": "string"}, "client_secret": {"type": "string"}},
        },
        streams=[
            _stream(
                "Account",
                "Id, Name, Industry, AnnualRevenue:number, BillingCountry, CreatedDate:datetime",
                40,
            ),
            _stream("Contact", "Id, AccountId, FirstName, LastName, Email, Title, CreatedDate:datetime", 60),
            _stream("Opportunity", "Id, AccountId, Name, StageName, Amount:number, CloseDate:date", 30),
            _stream(
                "Lead",
                "Id, FirstName, LastName, Company, Status, Email, CreatedDate:datetime",
                30,
                default=False,
            ),
        ],
        sync_seconds=9.0,
    )
    slack = ProviderConfig(
        provider_key="slack",
        name="Slack",
        source_definition_id=definition_id("airbyte/source-slack"),
        docker_repository="airbyte/source-slack",
        docker_image_tag="1.3.6",
        auth_mode="oauth",
        oauth_mode="airbyte",
        connection_specification=_spec(
            [],
            {
                "start_date": _START_DATE,
                "join_channels": {"type": "boolean", "default": True},
                "channel_filter": {"type": "array", "items": {"type": "string"}, "default": []},
            },
            "Slack",
        ),
        oauth_input_configuration={"type": "object", "properties": {"client_id": {"type": "string"}}},
        streams=[
            _stream("channels", "id, name, topic, is_private:boolean, created:datetime", 15),
            _stream("channel_messages", "ts, channel_id, user, text, thread_ts, created:datetime", 120),
            _stream("users", "id, name, real_name, email, is_bot:boolean", 25),
        ],
        sync_seconds=6.0,
    )
    google_drive = ProviderConfig(
        provider_key="google-drive",
        name="Google Drive",
        source_definition_id=definition_id("airbyte/source-google-drive"),
        docker_repository="airbyte/source-google-drive",
        docker_image_tag="0.2.3",
        auth_mode="oauth",
        oauth_mode="splendor",
        connection_specification=_spec(
            ["folder_url"],
            {
                "folder_url": {
                    "type": "string",
                    "title": "Folder URL",
                    "pattern": r"^https://drive\.google\.com/.+",
                },
            },
            "Google Drive",
        ),
        streams=[
            _stream("files", "id, name, mime_type, owner, web_view_link, modified_time:datetime", 40),
            _stream("documents", "id, file_id, title, content, modified_time:datetime", 40),
        ],
        sync_seconds=6.0,
    )
    notion = ProviderConfig(
        provider_key="notion",
        name="Notion",
        source_definition_id=definition_id("airbyte/source-notion"),
        docker_repository="airbyte/source-notion",
        docker_image_tag="3.0.10",
        auth_mode="oauth",
        oauth_mode="splendor",
        connection_specification=_spec([], {"start_date": _START_DATE}, "Notion"),
        streams=[
            _stream("pages", "id, title, url, content, created_by, last_edited_time:datetime", 45),
            _stream("databases", "id, title, url, created_time:datetime", 8),
            _stream("blocks", "id, page_id, type, text, last_edited_time:datetime", 100, default=False),
        ],
        sync_seconds=5.0,
    )
    return [stripe, postgres, hubspot, zendesk, github, salesforce, slack, google_drive, notion]


# name, docker repository suffix, tag, credential shape, oauth via Airbyte, streams (name: fields)
_LONG_TAIL: list[tuple[str, str, str, str, bool, dict[str, str]]] = [
    (
        "Asana",
        "asana",
        "1.3.3",
        "token",
        False,
        {"tasks": "gid, name, notes, assignee, due_on:date", "projects": "gid, name, color"},
    ),
    (
        "Airtable",
        "airtable",
        "4.5.1",
        "token",
        True,
        {"records": "id, table, title, notes, created_time:datetime"},
    ),
    (
        "Amplitude",
        "amplitude",
        "0.7.4",
        "basic",
        False,
        {"events": "uuid, event_type, user_id, event_time:datetime"},
    ),
    (
        "BambooHR",
        "bamboo-hr",
        "0.5.2",
        "token",
        False,
        {"employees": "id, display_name, job_title, department, hire_date:date"},
    ),
    (
        "BigQuery",
        "bigquery",
        "0.4.2",
        "service_account",
        False,
        {"tables": "id, dataset, name, row_count:integer"},
    ),
    (
        "Braintree",
        "braintree",
        "0.3.14",
        "basic",
        False,
        {"transactions": "id, amount:number, status, created_at:datetime"},
    ),
    (
        "Chargebee",
        "chargebee",
        "0.7.3",
        "token",
        False,
        {"subscriptions": "id, customer_id, status, mrr:integer", "invoices": "id, total:integer, status"},
    ),
    (
        "Confluence",
        "confluence",
        "0.3.6",
        "basic",
        False,
        {"pages": "id, title, body, space, created_at:datetime", "spaces": "id, key, name"},
    ),
    (
        "Datadog",
        "datadog",
        "1.1.2",
        "token",
        False,
        {"incidents": "id, title, severity, state, created:datetime", "monitors": "id, name, type, query"},
    ),
    (
        "Facebook Marketing",
        "facebook-marketing",
        "3.4.2",
        "oauth",
        True,
        {
            "ads": "id, name, status, campaign_id",
            "ads_insights": "ad_id, impressions:integer, clicks:integer, spend:number",
        },
    ),
    (
        "Freshdesk",
        "freshdesk",
        "3.1.4",
        "token",
        False,
        {"tickets": "id:integer, subject, description, status:integer, created_at:datetime"},
    ),
    (
        "GitLab",
        "gitlab",
        "4.4.1",
        "token",
        True,
        {
            "issues": "id:integer, title, description, state, created_at:datetime",
            "merge_requests": "id:integer, title, state",
        },
    ),
    (
        "Google Ads",
        "google-ads",
        "3.7.10",
        "oauth",
        True,
        {"campaigns": "id, name, status, budget:number", "ad_groups": "id, campaign_id, name"},
    ),
    (
        "Google Analytics 4",
        "google-analytics-data-api",
        "2.7.3",
        "oauth",
        True,
        {"daily_active_users": "date:date, active_users:integer"},
    ),
    ("Google Sheets", "google-sheets", "0.9.1", "oauth", True, {"rows": "row_number:integer, sheet, values"}),
    (
        "Greenhouse",
        "greenhouse",
        "0.5.29",
        "basic",
        False,
        {"candidates": "id:integer, first_name, last_name, title", "jobs": "id:integer, name, status"},
    ),
    (
        "Intercom",
        "intercom",
        "0.9.0",
        "oauth",
        True,
        {"conversations": "id, title, state, created_at:datetime", "contacts": "id, email, name"},
    ),
    (
        "Jira",
        "jira",
        "3.4.0",
        "basic",
        False,
        {"issues": "id, key, summary, description, status, created:datetime", "projects": "id, key, name"},
    ),
    (
        "Klaviyo",
        "klaviyo",
        "2.11.0",
        "token",
        False,
        {"profiles": "id, email, first_name, created:datetime", "campaigns": "id, name, status"},
    ),
    (
        "Linear",
        "linear",
        "0.1.4",
        "token",
        False,
        {"issues": "id, identifier, title, description, state, created_at:datetime"},
    ),
    (
        "LinkedIn Ads",
        "linkedin-ads",
        "5.1.3",
        "oauth",
        True,
        {"campaigns": "id:integer, name, status, cost_type"},
    ),
    (
        "Mailchimp",
        "mailchimp",
        "2.0.24",
        "oauth",
        True,
        {"campaigns": "id, type, status, send_time:datetime", "lists": "id, name, member_count:integer"},
    ),
    ("Mixpanel", "mixpanel", "3.5.0", "basic", False, {"export": "event, distinct_id, time:datetime"}),
    (
        "monday.com",
        "monday",
        "2.1.12",
        "token",
        True,
        {"items": "id, name, board_id, state, updated_at:datetime", "boards": "id, name"},
    ),
    (
        "MongoDB",
        "mongodb-v2",
        "1.5.12",
        "database",
        False,
        {"documents": "_id, collection, payload, updated_at:datetime"},
    ),
    (
        "MySQL",
        "mysql",
        "3.11.4",
        "database",
        False,
        {
            "customers": "id:integer, name, email, created_at:datetime",
            "orders": "id:integer, customer_id:integer, total:number",
        },
    ),
    (
        "Okta",
        "okta",
        "0.3.5",
        "token",
        True,
        {"users": "id, status, login, email, created:datetime", "groups": "id, name"},
    ),
    (
        "Pipedrive",
        "pipedrive",
        "2.2.27",
        "token",
        False,
        {"deals": "id:integer, title, value:number, status", "persons": "id:integer, name, email"},
    ),
    (
        "QuickBooks",
        "quickbooks",
        "3.0.42",
        "oauth",
        True,
        {
            "invoices": "Id, DocNumber, TotalAmt:number, TxnDate:date",
            "customers": "Id, DisplayName, PrimaryEmailAddr",
        },
    ),
    ("S3", "s3", "4.10.2", "basic", False, {"objects": "key, size:integer, last_modified:datetime, content"}),
    (
        "SendGrid",
        "sendgrid",
        "1.2.4",
        "token",
        False,
        {"messages": "msg_id, to_email, subject, status, last_event_time:datetime"},
    ),
    (
        "Sentry",
        "sentry",
        "0.5.3",
        "token",
        False,
        {
            "issues": "id, title, culprit, level, status, firstSeen:datetime",
            "events": "eventID, message, dateCreated:datetime",
        },
    ),
    (
        "Shopify",
        "shopify",
        "2.5.8",
        "oauth",
        True,
        {
            "orders": "id:integer, name, email, total_price:number, created_at:datetime",
            "products": "id:integer, title, vendor, product_type",
        },
    ),
    (
        "Snowflake",
        "snowflake",
        "0.3.6",
        "database",
        False,
        {"table_rows": "id, table_name, payload, loaded_at:datetime"},
    ),
    (
        "Square",
        "square",
        "1.6.2",
        "token",
        True,
        {
            "payments": "id, amount:integer, status, created_at:datetime",
            "customers": "id, given_name, email_address",
        },
    ),
    (
        "SurveyMonkey",
        "surveymonkey",
        "0.3.28",
        "oauth",
        True,
        {"survey_responses": "id, survey_id, answers, date_created:datetime"},
    ),
    (
        "Twilio",
        "twilio",
        "0.11.12",
        "basic",
        False,
        {
            "messages": "sid, from, to, body, status, date_sent:datetime",
            "calls": "sid, from, to, duration:integer",
        },
    ),
    (
        "Typeform",
        "typeform",
        "1.3.9",
        "token",
        True,
        {"responses": "response_id, form_id, answers, submitted_at:datetime", "forms": "id, title"},
    ),
    (
        "WooCommerce",
        "woocommerce",
        "0.5.6",
        "basic",
        False,
        {"orders": "id:integer, status, total:number, date_created:datetime"},
    ),
    (
        "Xero",
        "xero",
        "2.0.2",
        "oauth",
        True,
        {
            "invoices": "InvoiceID, InvoiceNumber, Total:number, Status",
            "contacts": "ContactID, Name, EmailAddress",
        },
    ),
    (
        "Zoom",
        "zoom",
        "1.2.8",
        "basic",
        False,
        {
            "meetings": "uuid, topic, host_id, duration:integer, start_time:datetime",
            "users": "id, email, type:integer",
        },
    ),
]


def _long_tail_spec(title: str, shape: str) -> dict[str, Any]:
    if shape == "token":
        return _spec(["api_token"], {"api_token": _secret("API token"), "start_date": _START_DATE}, title)
    if shape == "basic":
        return _spec(
            ["username", "password"],
            {"username": {"type": "string", "minLength": 1}, "password": _secret("Password")},
            title,
        )
    if shape == "database":
        return _spec(
            ["host", "port", "database", "username", "password"],
            {
                "host": {"type": "string", "minLength": 1},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "database": {"type": "string", "minLength": 1},
                "username": {"type": "string", "minLength": 1},
                "password": _secret("Password"),
            },
            title,
        )
    if shape == "service_account":
        return _spec(
            ["project_id", "credentials_json"],
            {
                "project_id": {"type": "string", "minLength": 1},
                "credentials_json": _secret("Service account JSON"),
            },
            title,
        )
    return _spec([], {"start_date": _START_DATE}, title)  # oauth: credentials come from the consent flow


def _long_tail() -> list[ProviderConfig]:
    out: list[ProviderConfig] = []
    for title, suffix, tag, shape, airbyte_oauth, streams in _LONG_TAIL:
        repo = f"airbyte/source-{suffix}"
        is_oauth = shape == "oauth"
        out.append(
            ProviderConfig(
                provider_key=suffix,
                name=title,
                source_definition_id=definition_id(repo),
                docker_repository=repo,
                docker_image_tag=tag,
                auth_mode="oauth" if is_oauth else "api_key",
                oauth_mode="airbyte" if is_oauth else "none",
                connection_specification=_long_tail_spec(title, shape),
                oauth_input_configuration={"type": "object", "properties": {}} if airbyte_oauth else {},
                streams=[_stream(name, fields, 25) for name, fields in streams.items()],
                sync_seconds=5.0,
                curated=False,
            )
        )
    return out


def default_providers() -> list[ProviderConfig]:
    return _curated() + _long_tail()


# --- records -------------------------------------------------------------------------------------------

_WORDS = [
    "invoice",
    "renewal",
    "onboarding",
    "outage",
    "latency",
    "billing",
    "refund",
    "upgrade",
    "contract",
    "search",
    "index",
    "pipeline",
    "export",
    "dashboard",
    "account",
    "payment",
    "shipping",
    "warehouse",
    "customer",
    "feedback",
    "release",
    "migration",
    "report",
    "quarterly",
    "audit",
]
_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia", "Tim", "Frances"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Torvalds", "Perlman"]
_STATUSES = ["open", "pending", "active", "closed", "paid", "succeeded", "resolved"]
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _value(field: FieldSpec, rng: random.Random, index: int, stream: str) -> Any:
    name = field.name.lower()
    if field.type == "integer":
        if name == "id" or name.endswith("_id") or name == "number":
            return index + 1 if name in ("id", "number") else rng.randint(1, 10_000)
        return rng.randint(0, 250_000)
    if field.type == "number":
        return round(rng.uniform(1, 25_000), 2)
    if field.type == "boolean":
        return rng.random() < 0.5
    if field.type == "datetime":
        moment = _EPOCH + timedelta(minutes=rng.randint(0, 60 * 24 * 120))
        return moment.isoformat().replace("+00:00", "Z")
    if field.type == "date":
        return (date(2026, 1, 1) + timedelta(days=rng.randint(0, 180))).isoformat()
    if field.type == "object":
        return {"key": rng.choice(_WORDS)}
    if field.type == "array":
        return rng.sample(_WORDS, 2)
    # strings: shape a few well-known names so the data looks like the provider's
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    if "email" in name:
        return f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com"
    if name in ("id", "gid", "sid", "uuid", "_id", "sha", "ts") or name.endswith("id"):
        return f"{stream[:3]}_{hashlib.sha1(f'{stream}{index}{name}'.encode()).hexdigest()[:14]}"
    if "name" in name:
        return (
            f"{first} {last}"
            if "first" not in name and "last" not in name
            else (first if "first" in name else last)
        )
    if name in ("status", "state", "level", "priority", "lifecyclestage", "stagename", "dealstage"):
        return rng.choice(_STATUSES)
    if "url" in name or "link" in name:
        return f"https://example.com/{stream}/{index + 1}"
    if name in ("currency",):
        return rng.choice(["usd", "eur", "gbp"])
    if name in ("body", "description", "content", "text", "message", "notes", "answers", "payload"):
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 24))).capitalize() + "."
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4))).title()


def generate_records(stream: StreamConfig, count: int, seed: str) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    records = []
    for index in range(count):
        records.append({f.name: _value(f, rng, index, stream.name) for f in stream.fields})
    return records


def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)
