"""A minimal MCP server (one read tool, ``echo``): the upstream `maos bench` measures the
gateway against, and a first upstream to try the gateway with (examples/mcp/).

    python -m maos.mcp.echo        # stdio
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
    server().run("stdio")
