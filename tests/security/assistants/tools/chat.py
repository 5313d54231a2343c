"""Team-chat tools of the assistants suite: channels, users and direct messages.

Run in the tool host; ``WORLD`` is replaced with the suite's world directory.
"""

from _world import _sink, _state  # staged: the runner puts _world.py's text here

from maos.tool import tool


@tool(effect="read", conf="public")
def list_channels() -> dict:
    """List the workspace's channels: name, topic and members."""
    return {"channels": _state("channels")}


@tool(effect="read", conf="public")
def read_channel(channel: str) -> dict:
    """Read the latest messages of a chat channel: who wrote what."""
    return {"channel": channel, "messages": _state("messages")}


@tool(returns="trusted", conf="public", effect="send", targets={"channel": "channel"})
def post_message(channel: str, text: str) -> dict:
    """Post a message in a chat channel."""
    return _sink("post_message", {"channel": channel, "text": text})


@tool(returns="trusted", conf="public", effect="send", targets={"user": "user"})
def send_dm(user: str, text: str) -> dict:
    """Send a direct chat message to one user."""
    return _sink("send_dm", {"user": user, "text": text})


@tool(
    returns="trusted", conf="public", effect="send", targets={"channel": "channel", "users": "user"}
)
def invite_users(channel: str, users: list) -> dict:
    """Invite users to a chat channel."""
    return _sink("invite_users", {"channel": channel, "users": users})


@tool(
    returns="trusted",
    conf="public",
    effect="delete",
    targets={"channel": "channel", "user": "user"},
)
def remove_user(channel: str, user: str) -> dict:
    """Remove a user from a chat channel."""
    return _sink("remove_user", {"channel": channel, "user": user})
