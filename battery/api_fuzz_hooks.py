"""schemathesis hooks for the api-fuzz check (loaded through SCHEMATHESIS_HOOKS): one check that the rules agree
with the schema. A schema-valid request may still be refused for what a static schema cannot know (a SKU the
catalogue does not sell, an artwork never uploaded, stock, a template's text slots, an image's content); any other
refusal of schema-valid input means the schema admits what the rules refuse, and fails the run."""

from __future__ import annotations

import json

import schemathesis

from core.artwork import RefusalCode
from core.text import TextProblemCode

# Problem codes that depend on data, per operation; everything else the rules refuse, the schema states.
DATA_DEPENDENT = {
    "POST /v1/orders": {"unknown_sku", "out_of_stock", "artwork_unknown", "artwork_resolution_too_low",
                        "unknown_text_slot", "text_does_not_fit", *TextProblemCode},
    "POST /v1/artwork": {RefusalCode.UNSUPPORTED_FORMAT, RefusalCode.POLYGLOT, RefusalCode.TRUNCATED,
                         RefusalCode.TOO_MANY_PIXELS},
}
# The statuses the built-in positive_data_acceptance check is told to let through for the operations above; this
# check then looks inside each such refusal. 402: the payment fake declines some external ids, as a card would.
REFUSED_FOR_DATA = {"POST /v1/orders": (402, 422), "POST /v1/artwork": (422,)}


@schemathesis.check
def rules_agree_with_schema(ctx, response, case) -> bool | None:
    """A schema-valid request refused with 422 names only problems that depend on data."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    operation = f"{case.method.upper()} {case.operation.path}"
    try:
        problems = json.loads(response.content).get("errors", [])
    except (ValueError, AttributeError):
        raise AssertionError("a 422 without a problem JSON body") from None
    expressible = sorted({f"{p.get('field')} {p.get('code')}" for p in problems
                          if p.get("code") not in DATA_DEPENDENT.get(operation, set())})
    if expressible:
        raise AssertionError(f"Schema-valid input refused for a rule the schema does not state: "
                             f"{', '.join(expressible)}")
    return None
