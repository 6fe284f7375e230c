"""Answers in another shape: a switch that makes a route's successful JSON answer differ from the contract
(a field dropped, renamed or given another value), as a live API that disagrees with an assumed shape
would. Applied by the middleware to the body the handler produced, so the handler's effect is unchanged."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The counters' key form, which the switches are keyed by too: "GET /v1/admin/sources".
ROUTE_KEY = r"^(GET|POST|PUT|PATCH|DELETE) /\S*$"


class ShapeChange(BaseModel):
    """One change to a route's answer. `field` is a dotted path into the JSON body; `*` steps into every
    item of a list (`runs.*.status`)."""

    model_config = ConfigDict(extra="forbid")

    route: str = Field(pattern=ROUTE_KEY, description='"METHOD /route/template" exactly as in the counters')
    field: str = Field(pattern=r"^[^.\s]+(\.[^.\s]+)*$")
    change: Literal["drop", "rename", "replace"]
    to: Any = Field(default=None, description="rename: the new key; replace: the new value")

    @model_validator(mode="after")
    def _rename_names_a_key(self) -> "ShapeChange":
        if self.change == "rename" and not (isinstance(self.to, str) and self.to):
            raise ValueError("a rename needs `to`: the field's new name")
        if self.field.split(".")[-1] == "*":
            raise ValueError("the last step of `field` names a key, not `*`")
        return self

    def apply(self, body: Any) -> Any:
        """The body with this change made wherever `field` leads (in place; also returned)."""
        _walk(body, self.field.split("."), self)
        return body


def _walk(node: Any, steps: list[str], change: ShapeChange) -> None:
    head, rest = steps[0], steps[1:]
    if head == "*":
        if isinstance(node, list):
            for item in node:
                _walk(item, rest, change)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if rest:
        _walk(node[head], rest, change)
    elif change.change == "drop":
        del node[head]
    elif change.change == "rename":
        node[str(change.to)] = node.pop(head)
    else:
        node[head] = change.to
