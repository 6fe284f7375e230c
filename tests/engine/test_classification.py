"""Field classification proposals: each rule, its reason, and the Splendor config it maps to."""

import pytest

from splendor_api import models
from splendor_flows.engine.classification import Classification, FieldProposal, Role, classify_field, propose


def field(name: str, kind: str | list[str] | None = "string") -> models.StreamField:
    return models.StreamField(name=name, type=kind)


@pytest.mark.parametrize(
    ("name", "kind", "role"),
    [
        ("id", "string", Role.FILTER),
        ("customer_id", "string", Role.FILTER),
        ("amount", "integer", Role.FILTER),
        ("delinquent", ["null", "boolean"], Role.FILTER),
        ("created", "datetime", Role.FILTER),
        ("updated_at", "string", Role.FILTER),
        ("subject", "string", Role.TEXT),
        ("description", ["null", "string"], Role.TEXT),
        ("ticket_body", "string", Role.TEXT),
        ("status", "string", Role.VOCABULARY),
        ("hs_pipeline_stage", "string", Role.VOCABULARY),
        ("email", "string", Role.FILTER),
        ("plan", "string", Role.VOCABULARY),
        ("zzz", "string", Role.FILTER),
        ("untyped_note", None, Role.FILTER),
    ],
)
def test_each_rule(name: str, kind: str | list[str] | None, role: Role) -> None:
    proposal = classify_field("s", field(name, kind))
    assert proposal.role == role, proposal
    assert proposal.reason  # every proposal says why


def test_titles_are_boosted_and_guesses_say_so() -> None:
    assert classify_field("s", field("title")).boost == 2.0
    assert "guess" in classify_field("s", field("widget")).reason


def test_propose_covers_only_selected_streams_in_discovery_order() -> None:
    streams = [
        models.StreamSchema(name="tickets", fields=[field("id"), field("subject"), field("status")]),
        models.StreamSchema(name="contacts", fields=[field("email")]),
    ]
    proposal = propose(streams, ["tickets"])
    assert [(f.stream, f.field, f.role) for f in proposal.fields] == [
        ("tickets", "id", Role.FILTER),
        ("tickets", "subject", Role.TEXT),
        ("tickets", "status", Role.VOCABULARY),
    ]


def test_update_maps_roles_to_splendor_config_once_per_field_name() -> None:
    classification = Classification(
        fields=[
            FieldProposal(stream="a", field="subject", type="string", role=Role.TEXT, reason="r", boost=2.0),
            FieldProposal(stream="b", field="subject", type="string", role=Role.TEXT, reason="r", boost=2.0),
            FieldProposal(stream="a", field="body", type="string", role=Role.TEXT, reason="r"),
            FieldProposal(stream="a", field="status", type="string", role=Role.VOCABULARY, reason="r"),
            FieldProposal(stream="a", field="id", type="string", role=Role.FILTER, reason="r"),
        ]
    )
    body = classification.to_update().to_body()
    assert body["search_config"]["text_fields"] == [
        {"field": "body", "boost": 1.0, "natural_language": True},
        {"field": "subject", "boost": 2.0, "natural_language": True},
    ]
    assert [f["field"] for f in body["semantic_config"]["document_embeddings"]["fields"]] == [
        "body",
        "subject",
    ]
    assert body["semantic_config"]["vocabulary"]["fields"] == [{"field": "status"}]
    assert "id" not in str(body)
