"""What every tool module of the assistants suite shares: the world it reads and the sink
it writes. Not a tool module itself: the runner puts this text in place of each module's
``from _world import ...`` line when it stages the modules (a tool host runs one module's
source alone, so a module cannot import a sibling), and replaces ``__WORLD__`` with the
suite's world directory, where ``state.json`` is the scenario's state and ``sink.jsonl``
receives every effect.
"""

import json

WORLD = "__WORLD__"


def _state(key):
    with open(WORLD + "/state.json", encoding="utf-8") as f:
        return json.load(f).get(key, [])


def _sink(name, args):
    with open(WORLD + "/sink.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": name, "args": args}) + "\n")
    return {"ok": True, "tool": name}
