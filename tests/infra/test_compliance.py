"""cdk-nag (AwsSolutions, Serverless) and cfn-lint over the synthesized templates."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Annotations, Match

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.synth

NAG_PACKS = Match.string_like_regexp(r"^(AwsSolutions|Serverless)-")


@pytest.mark.parametrize("which", ["synth", "custom_synth"])
def test_no_unacknowledged_nag_errors(which: str, request: pytest.FixtureRequest) -> None:
    synthesized: Synthesized = request.getfixturevalue(which)
    for stack in (synthesized.built.stateful, synthesized.built.service):
        errors = Annotations.from_stack(stack).find_error("*", NAG_PACKS)
        assert errors == [], [e.entry.data for e in errors]


def test_both_rule_packs_ran(synth: Synthesized) -> None:
    reports = sorted(p.name for p in synth.outdir.glob("*-NagReport.csv"))
    assert len(reports) == 4
    assert {r.split("-")[0] for r in reports} == {"AwsSolutions", "Serverless"}


def test_every_acknowledgement_names_its_finding_and_reason(synth: Synthesized) -> None:
    count = 0
    for template in synth.templates.values():
        for logical_id, resource in template["Resources"].items():
            for ack in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
                count += 1
                assert re.match(r"^(AwsSolutions|Serverless)-[A-Za-z0-9]+$", ack["id"]), logical_id
                assert len(ack["reason"]) >= 30, (logical_id, ack)
    assert count > 0


@pytest.mark.parametrize("which", ["synth", "custom_synth"])
def test_cfn_lint_is_clean(which: str, request: pytest.FixtureRequest) -> None:
    synthesized: Synthesized = request.getfixturevalue(which)
    templates = sorted(str(p) for p in Path(synthesized.outdir).glob("*.template.json"))
    assert len(templates) == 2
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--format", "parseable", *templates], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_templates_are_plain_json(synth: Synthesized) -> None:
    for path in synth.outdir.glob("*.template.json"):
        assert isinstance(json.loads(path.read_text()), dict)
