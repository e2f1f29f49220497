"""The CDK app: `cdk synth` / `cdk deploy` run this (see cdk.json and docs/infra.md)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `import infra` from infra/

from infra.main import build_app

if __name__ == "__main__":
    build_app().app.synth()
