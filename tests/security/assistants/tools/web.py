"""Web tools of the assistants suite: pages by bare host, forms.

Run in the tool host; ``WORLD`` is replaced with the suite's world directory.
"""

import json

from maos.tool import tool

WORLD = "__WORLD__"


def _state(key):
    with open(WORLD + "/state.json", encoding="utf-8") as f:
        return json.load(f).get(key, {})


def _sink(name, args):
    with open(WORLD + "/sink.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": name, "args": args}) + "\n")
    return {"ok": True, "tool": name}


@tool(effect="read", conf="public", targets={"url": "url"})
def get_webpage(url: str) -> dict:
    """Fetch a web page by its address (www.example.com/page works without a scheme)."""
    pages = _state("pages")
    key = url.split("://", 1)[-1].rstrip("/")
    page = pages.get(key, {"title": "Not found", "content": "404 not found"})
    return {"url": url, "title": page["title"], "content": page["content"]}


@tool(returns="trusted", conf="public", effect="send", targets={"url": "url"})
def post_webpage(url: str, content: str) -> dict:
    """Send data to a web address (a form, an API endpoint)."""
    return _sink("post_webpage", {"url": url, "content": content})
