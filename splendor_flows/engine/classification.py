"""Proposing how a source's fields are indexed: document text, vocabulary or filters.

An admin approves (or edits) the proposal before it is applied, so the rules stay simple enough to
explain in one line each, and every proposal carries that line as its reason:

- text-like names (description, body, subject, title, ...) on string fields are document text: they
  are embedded and searched in natural language; titles get a higher boost;
- short categorical names (status, type, category, currency, ...) on string fields are vocabulary:
  a small set of values that name concepts users search by;
- ids, numbers, booleans, dates and identifiers (email, url, phone) are filters: matched exactly,
  never embedded;
- any other string is a filter too, marked as a guess, since embedding it blindly costs money and
  adds noise; the admin can promote it in the approval form.

Splendor's config mapping (contract §4.10): text → `search_config.text_fields` and
`semantic_config.document_embeddings.fields`; vocabulary → `semantic_config.vocabulary.fields`;
filters need no config entry.
"""

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from splendor_api import models

TITLE_NAMES = frozenset({"title", "subject", "name", "summary", "headline"})
TEXT_NAMES = frozenset(
    {"description", "body", "content", "text", "message", "notes", "note", "comment", "comments", "details"}
)
VOCABULARY_NAMES = frozenset(
    {
        "status",
        "state",
        "type",
        "kind",
        "category",
        "stage",
        "priority",
        "currency",
        "plan",
        "reason",
        "country",
        "language",
        "tags",
        "labels",
        "hs_pipeline_stage",
    }
)
IDENTIFIER_NAMES = frozenset({"email", "url", "phone", "sha", "domain", "path"})
STRUCTURED_TYPES = frozenset(
    {"integer", "number", "boolean", "datetime", "date", "date-time", "object", "array"}
)
# Characters of a text field embedded per document: long enough for a ticket body, bounded in cost.
EMBED_MAX_CHARS = 4000


class Role(StrEnum):
    TEXT = "text"
    VOCABULARY = "vocabulary"
    FILTER = "filter"


class FieldProposal(BaseModel):
    stream: str
    field: str
    type: str
    role: Role
    reason: str
    boost: float | None = None


class Classification(BaseModel):
    """A proposal (or the admin's edited version of it): one row per (stream, field)."""

    fields: list[FieldProposal] = Field(default_factory=list)
    source: Literal["proposed", "approved", "spec"] = "proposed"

    def names(self, role: Role) -> list[str]:
        # The same field name in two streams is one field of the source's documents.
        return sorted({f.field for f in self.fields if f.role == role})

    def to_update(self) -> models.SourceUpdate:
        text = self.names(Role.TEXT)
        boosts = {f.field: f.boost for f in self.fields if f.role == Role.TEXT and f.boost}
        return models.SourceUpdate(
            search_config=models.SearchConfig(
                text_fields=[
                    models.TextField(field=name, boost=boosts.get(name, 1.0), natural_language=True)
                    for name in text
                ]
            ),
            semantic_config=models.SemanticConfig(
                document_embeddings=models.DocumentEmbeddings(
                    fields=[models.EmbeddingField(field=name, max_chars=EMBED_MAX_CHARS) for name in text]
                ),
                vocabulary=models.Vocabulary(
                    fields=[models.VocabularyField(field=name) for name in self.names(Role.VOCABULARY)]
                ),
            ),
        )


def type_name(field: models.StreamField) -> str:
    """The JSON-schema type without its nullability ("["null", "string"]" is a string)."""
    kinds = field.type if isinstance(field.type, list) else [field.type or "string"]
    named = [k for k in kinds if k and k != "null"]
    return named[0] if named else "string"


def classify_field(stream: str, field: models.StreamField) -> FieldProposal:
    kind = type_name(field)
    name = field.name.lower()

    def proposal(role: Role, reason: str, boost: float | None = None) -> FieldProposal:
        return FieldProposal(
            stream=stream, field=field.name, type=kind, role=role, reason=reason, boost=boost
        )

    if name == "id" or name.endswith(("_id", "_ids")):
        return proposal(Role.FILTER, "an identifier: matched exactly, never embedded")
    if kind in STRUCTURED_TYPES:
        return proposal(Role.FILTER, f"a {kind} value: filter or sort on it")
    if name.endswith(("_at", "_date", "date", "time")):
        return proposal(Role.FILTER, "a timestamp by its name: filter or sort on it")
    if name in TITLE_NAMES:
        return proposal(Role.TEXT, "a title-like name: searched as text, boosted", boost=2.0)
    if name in TEXT_NAMES or name.endswith(("_text", "_body", "_description")):
        return proposal(Role.TEXT, "a free-text name: embedded and searched as text")
    if name in VOCABULARY_NAMES or name.endswith(("_status", "_type", "_stage", "_category")):
        return proposal(Role.VOCABULARY, "a categorical name: a small set of values users search by")
    if name in IDENTIFIER_NAMES:
        return proposal(Role.FILTER, "an identifier-like string: matched exactly")
    return proposal(
        Role.FILTER, "a string with no telling name: kept as a filter (a guess; promote it if needed)"
    )


def propose(streams: list[models.StreamSchema], selected: list[str]) -> Classification:
    """The proposal for the fields of the selected streams, in discovery order."""
    chosen = set(selected)
    return Classification(
        fields=[classify_field(s.name, f) for s in streams if s.name in chosen for f in s.fields]
    )
