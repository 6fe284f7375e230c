"""Field classification proposals: each rule, its reason, and the Splendor config it maps to."""

import pytest

from splendor_api import models
from splendor_flows.engine.classification import (
    REVIEWER_REASON,
    AppliedClassification,
    Classification,
    FieldProposal,
    ReviewRefused,
    Role,
    classify_field,
    is_classified,
    propose,
    reviewed,
    streams_to_classify,
)


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


# --- the review of a proposal -----------------------------------------------------------------------


def _tickets() -> list[models.StreamSchema]:
    return [
        models.StreamSchema(
            name="tickets", fields=[field("id"), field("subject"), field("status"), field("priority")]
        ),
        models.StreamSchema(name="comments", fields=[field("id"), field("body")]),
    ]


def test_streams_to_classify_prefers_the_spec_then_the_defaults_then_all_discovered() -> None:
    assert streams_to_classify(["comments"], ["tickets"], _tickets()) == ["comments"]
    assert streams_to_classify(None, ["tickets"], _tickets()) == ["tickets"]
    assert streams_to_classify(None, [], _tickets()) == ["tickets", "comments"]


def test_review_applies_the_lists_and_makes_every_other_field_a_filter() -> None:
    proposal = propose(_tickets(), ["tickets", "comments"])
    approved = reviewed(proposal, ["subject"], ["priority", "status"])
    assert approved.source == "approved"
    assert approved.roles() == {
        "text": ["subject"],
        "vocabulary": ["priority", "status"],
        "filter": ["body", "id"],
    }
    by_field = {f.field: f for f in approved.fields}
    # Unchanged roles keep the rule's reason and boost; changed ones say who changed them.
    assert by_field["subject"].boost == 2.0 and by_field["subject"].reason.startswith("a title-like")
    assert by_field["body"].role == Role.FILTER and by_field["body"].reason == REVIEWER_REASON
    assert by_field["body"].boost is None


def test_review_as_proposed_is_the_proposal() -> None:
    proposal = propose(_tickets(), ["tickets", "comments"])
    again = reviewed(proposal, proposal.names(Role.TEXT), proposal.names(Role.VOCABULARY))
    assert again.fields == proposal.fields
    assert again.to_update() == proposal.to_update()


def test_review_refuses_unknown_fields_naming_them_and_the_allowed_ones() -> None:
    proposal = propose(_tickets(), ["tickets"])
    with pytest.raises(ReviewRefused) as refused:
        reviewed(proposal, ["subject", "body"], [])
    message = str(refused.value)
    # body exists, but only in a stream that is not classified.
    assert (
        message.startswith("text_fields: body not among")
        and "allowed: id, priority, status, subject" in message
    )
    with pytest.raises(ReviewRefused, match=r"^vocabulary_fields: nope"):
        reviewed(proposal, [], ["nope"])


def test_review_refuses_a_field_with_two_roles() -> None:
    proposal = propose(_tickets(), ["tickets"])
    with pytest.raises(ReviewRefused, match="status given both roles"):
        reviewed(proposal, ["status"], ["status"])


def test_a_source_whose_config_names_fields_is_classified() -> None:
    def source(**config: object) -> models.Source:
        return models.Source.model_validate(
            {
                "source_id": 1,
                "source_key": "k",
                "source_type": "airbyte",
                "name": "n",
                "dataset_id": "d",
                "tenant_id": "t",
                **config,
            }
        )

    assert not is_classified(source())
    assert not is_classified(source(search_config={"text_fields": []}, semantic_config={}))
    assert is_classified(source(search_config={"text_fields": [{"field": "body"}]}))
    assert is_classified(source(semantic_config={"vocabulary": {"fields": [{"field": "status"}]}}))
    assert is_classified(source(semantic_config={"document_embeddings": {"fields": [{"field": "body"}]}}))


def test_the_table_and_the_event_payload_carry_names_roles_and_reasons_only() -> None:
    proposal = propose(_tickets(), ["tickets"])
    assert proposal.table()[1] == {
        "field": "subject",
        "stream": "tickets",
        "type": "string",
        "proposed role": "text",
        "reason": proposal.fields[1].reason,
    }
    assert proposal.roles() == {"text": ["subject"], "vocabulary": ["priority", "status"], "filter": ["id"]}
    applied = AppliedClassification(source_id=3, mode="auto", roles=proposal.roles())
    assert applied.describe() == "applied (auto): 1 text, 2 vocabulary, 1 filter field(s)"
