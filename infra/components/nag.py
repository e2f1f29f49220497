"""cdk-nag acknowledgements: each names its finding and says why it does not apply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct


@dataclass(frozen=True)
class Ack:
    rule: str
    reason: str
    applies_to: Sequence[str | RegexAppliesTo] = field(default_factory=tuple)


def acknowledge(construct: IConstruct, *acks: Ack) -> None:
    """Acknowledge findings on a construct and everything under it."""
    NagSuppressions.add_resource_suppressions(
        construct,
        [
            NagPackSuppression(id=a.rule, reason=a.reason, applies_to=list(a.applies_to) or None)
            for a in acks
        ],
        apply_to_children=True,
    )
