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

The review of a proposal is also here, free of Prefect: which streams are classified, what an admin's
answer turns the proposal into (and which answers are refused, before anything is applied), whether a
source was classified already, and what the "applied" event says.
"""

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Literal

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

    def field_names(self) -> list[str]:
        return sorted({f.field for f in self.fields})

    def roles(self) -> dict[str, list[str]]:
        """Field names per role: the payload of the "classification applied" event (names only)."""
        return {role.value: self.names(role) for role in Role}

    def table(self) -> list[dict[str, Any]]:
        """One row per (stream, field), the columns an admin reviews."""
        return [
            {
                "field": f.field,
                "stream": f.stream,
                "type": f.type,
                "proposed role": f.role.value,
                "reason": f.reason,
            }
            for f in self.fields
        ]

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
        article = "an" if kind[0] in "aeiou" else "a"
        return proposal(Role.FILTER, f"{article} {kind} value: filter or sort on it")
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


# "off": the spec's search_config / semantic_config are applied as written (empty means none), the way
# every source was connected before classification existed. "review": an admin approves, edits or
# rejects the proposal before it is applied. "auto": the proposal is applied as it is.
ClassificationMode = Literal["off", "review", "auto"]
REVIEWER_REASON = "set by the reviewer"


class ReviewRefused(ValueError):
    """An admin's answer that cannot be applied: the message names the field and what it may hold."""


def streams_to_classify(
    selected: list[str] | None, default_streams: list[str], discovered: list[models.StreamSchema]
) -> list[str]:
    """The streams the connection will sync: the spec's, else the connector's defaults, else (a
    catalog connector, whose defaults Splendor picks) every stream discovery reports."""
    return list(selected or default_streams or [s.name for s in discovered])


def _unknown(kind: str, names: Iterable[str], allowed: list[str]) -> ReviewRefused:
    listed = ", ".join(sorted(set(names)))
    return ReviewRefused(
        f"{kind}: {listed} not among the fields of the classified streams; allowed: {', '.join(allowed)}"
    )


def reviewed(
    proposal: Classification, text_fields: list[str], vocabulary_fields: list[str]
) -> Classification:
    """The classification an admin approved: the named fields are text or vocabulary, every other
    field of the proposal is a filter. A field keeps its proposed reason (and boost) when its role did
    not change. Unknown names, or a name given both roles, are refused: nothing is guessed."""
    allowed = proposal.field_names()
    for kind, names in (("text_fields", text_fields), ("vocabulary_fields", vocabulary_fields)):
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise _unknown(kind, unknown, allowed)
    both = sorted(set(text_fields) & set(vocabulary_fields))
    if both:
        raise ReviewRefused(
            f"text_fields and vocabulary_fields: {', '.join(both)} given both roles; a field has one role"
        )

    def role_of(name: str) -> Role:
        if name in text_fields:
            return Role.TEXT
        return Role.VOCABULARY if name in vocabulary_fields else Role.FILTER

    fields = []
    for row in proposal.fields:
        role = role_of(row.field)
        if role == row.role:
            fields.append(row)
        else:
            fields.append(row.model_copy(update={"role": role, "reason": REVIEWER_REASON, "boost": None}))
    return Classification(fields=fields, source="approved")


def has_index_config(search: models.SearchConfig, semantic: models.SemanticConfig) -> bool:
    """Whether a search / semantic config names any field (the API reports empty lists for "none")."""
    return bool(
        search.text_fields
        or semantic.document_embeddings.fields
        or semantic.vocabulary.fields
        or semantic.image_embeddings
    )


def is_classified(source: models.Source) -> bool:
    """A source whose config names fields was classified already (by an earlier run, a connectors
    file or the console): Splendor keeps the answer, so a resumed run does not ask again."""
    return has_index_config(source.search_config, source.semantic_config)


class AppliedClassification(BaseModel):
    """What was applied to a source (the step's checkpoint): field names per role, nothing else."""

    source_id: int
    mode: ClassificationMode
    roles: dict[str, list[str]]

    def describe(self) -> str:
        counts = ", ".join(f"{len(self.roles.get(role.value, []))} {role.value}" for role in Role)
        return f"applied ({self.mode}): {counts} field(s)"
