"""A plan step's agent: draft a report from the Commander's prompt into the workspace.

Run by the Task Orchestrator (``maos run examples/plans/report.yaml``): it reads the
mission (``MAOS_MISSION``) and the task prompt (``MAOS_PROMPT``) from its pod's
environment, writes ``reports/draft.md`` and reports the step's value as one
``MAOS_RESULT <json>`` line, which the next step receives in ``MAOS_INPUTS``.
"""

import json
import os

from maos import sdk

mission = os.environ.get("MAOS_MISSION", "")
prompt = os.environ.get("MAOS_PROMPT", "")
draft = f"# Draft\n\nMission: {mission}\n\nTask: {prompt.strip()}\n"
sdk.fs.write("reports/draft.md", draft, key="draft")
print("MAOS_RESULT " + json.dumps({"path": "reports/draft.md", "chars": len(draft)}))
