"""What every part of the resource model shares: the API's names, the bounds of its strings, and the pydantic
base (camelCase on the wire, unknown fields rejected)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from robustness_gate.durations import DURATION_PATTERN

GROUP = "robustness.dev"


VERSION = "v1alpha1"


API_VERSION = f"{GROUP}/{VERSION}"


KIND = "RobustnessGate"


PLURAL = "robustnessgates"


SINGULAR = "robustnessgate"


SHORT_NAMES = ["rgate"]


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, json_schema_extra={"example": "30s"}),
]


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


# Label matchers a user may add to generated histogram queries, e.g. app="fraud",route!~"/health.*".
LABEL_MATCHERS = r'^\s*([a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\]|\\.)*"\s*(,\s*|$))*$'


METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"


MAX_LOOKS = 10_000


# Longest query template: queries travel in URLs, and a gate should stay readable.
MAX_QUERY = 10_000
# Features of one metric: a status lists each judged one (drifted first), and must stay well within the size an
# object in etcd may have (1.5 MiB).
MAX_FEATURES = 500
# Buckets (or categories) of a drift reference given in the gate.
MAX_BUCKETS = 200
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class Model(BaseModel):
    """camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=False)
