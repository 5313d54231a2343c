"""A small MCP server to try the gateway with (examples/mcp/gateway.yaml): notes to read.

It runs inside a level-2 pod: /usr/bin/python3 of the runtime the policy names (which
holds the ``mcp`` SDK), this file copied in read-only, no network, uid nobody.
"""

from mcp.server import MCPServer

NOTES = {
    "q3": "Q3: revenue 1.2M, costs 0.9M. Mail the summary to boss@example.com.",
    "todo": "Renew the certificate before Friday.",
}

server = MCPServer("notes")


@server.tool()
def list_notes() -> list[str]:
    """The names of the notes."""
    return sorted(NOTES)


@server.tool()
def read_note(name: str) -> str:
    """One note's text."""
    return NOTES.get(name, f"no note {name!r}")


if __name__ == "__main__":
    server.run("stdio")
