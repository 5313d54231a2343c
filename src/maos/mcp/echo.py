"""A minimal MCP server (one read tool, ``echo``): the upstream `maos bench` measures the
gateway against, and a first upstream to try the gateway with (examples/mcp/).

    python -m maos.mcp.echo                 # stdio
    python -m maos.mcp.echo --http PORT     # streamable HTTP on 127.0.0.1:PORT
"""

from __future__ import annotations

from mcp.server import MCPServer

__all__ = ["server"]


def server() -> MCPServer:
    echo = MCPServer("echo")

    @echo.tool()
    def say(text: str) -> str:
        """Return the text as given."""
        return text

    return echo


if __name__ == "__main__":
    import sys

    if "--http" in sys.argv:
        port = int(sys.argv[sys.argv.index("--http") + 1])
        server().run("streamable-http", host="127.0.0.1", port=port)
    else:
        server().run("stdio")
