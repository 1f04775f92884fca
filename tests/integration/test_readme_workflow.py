"""The README's own workflow, run as its shell block says: profile → fit → optimize → train.

The commands are read from README.md (the block under "## The whole workflow"), so the README
cannot drift from what works. The plan must train: no function may run out of memory, and the
optimizer must plan no function smaller than the profile ran in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def workflow_commands() -> str:
    text = README.read_text()
    section = text.split("## The whole workflow", 1)[1]
    block = re.search(r"```shell\n(.*?)```", section, re.S)
    assert block, "README.md: no shell block under '## The whole workflow'"
    return block.group(1)


@pytest.mark.slow
def test_the_readmes_workflow_trains_its_plan(tmp_path: Path) -> None:
    script = workflow_commands()
    assert "fasdl profile" in script and "fasdl train --plan" in script
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert out.returncode == 0, out.stderr[-3000:]

    coeffs = json.loads((tmp_path / "coeffs.json").read_text())
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert coeffs["min_memory_mb"] is not None
    assert plan["memory"] >= coeffs["min_memory_mb"]
    (summary_path,) = (tmp_path / "fasdl-runs" / "output").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["config"]["memory_mb"] == plan["memory"]
    assert summary["config"]["num_workers"] == plan["num_workers"]
    assert summary["iterations"] > 0 and summary["test_accuracy"] is not None
    prediction = json.loads((summary_path.parent / "prediction.json").read_text())
    assert prediction["time_s"] == plan["predicted_time_s"] and prediction["accuracy_time"]
    assert "predicted" in out.stdout  # the plan's prediction next to the measurement
    records = json.loads((summary_path.parent / "invocations.json").read_text())
    assert records and all(r["state"] == "succeeded" for r in records), records
    assert "digits " in out.stdout and "finished" in out.stdout  # fasdl runs, fasdl status
    assert (tmp_path / "report" / "report.html").is_file()  # fasdl report --out report/
