"""A plan step's agent: publish the draft an earlier step reported.

It finds the draft's path in ``MAOS_INPUTS`` (``{step: {"value": ..., "label": ...}}``),
reads it through the kernel, writes ``reports/final.md`` and reports that path.
"""

import json
import os

from maos import sdk

inputs = json.loads(os.environ.get("MAOS_INPUTS", "{}"))
draft_path = next(iter(inputs.values()))["value"]["path"]
draft = sdk.fs.read(draft_path).value["content"]
final = draft.replace("# Draft", "# Report", 1)
sdk.fs.write("reports/final.md", final, key="final")
print("MAOS_RESULT " + json.dumps({"path": "reports/final.md", "from": draft_path}))
