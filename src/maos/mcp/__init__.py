"""The MCP gateway (issue 13): MAOS in the path of every tool call an MCP client makes.

Layering: above the Ring 1 packages and `maos.boot` (it wires a configured kernel, the
pod gateways' tool path and the SDK's client and server), below the CLI. Modules:
`policy` (gateway.yaml and its schema), `rules` (operator rules, compiled), `upstream`
(connections to upstream servers; `launch` decides a stdio upstream's command and
environment), `catalogue` (what is offered as what), `adapter` (the ``tool`` family
the Commit Layer calls), `gateway` (the MCP server), `serve` (stdio, HTTP, start order).
"""

from maos.mcp.gateway import OUTCOME_TOOL, Gateway
from maos.mcp.policy import Policy, load_policy, policy_schema
from maos.mcp.serve import running_gateway, serve_http, serve_stdio

__all__ = [
    "OUTCOME_TOOL",
    "Gateway",
    "Policy",
    "load_policy",
    "policy_schema",
    "running_gateway",
    "serve_http",
    "serve_stdio",
]
