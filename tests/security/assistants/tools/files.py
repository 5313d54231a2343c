"""Cloud-drive tools of the assistants suite: files with sharing.

Run in the tool host; ``WORLD`` is replaced with the suite's world directory.
"""

from _world import _sink, _state  # staged: the runner puts _world.py's text here

from maos.tool import tool


@tool(effect="read", conf="public")
def list_files() -> dict:
    """List the files of the user's drive: id, name, owner and who they are shared with."""
    files = _state("files")
    return {"files": [{k: v for k, v in f.items() if k != "content"} for f in files]}


@tool(effect="read", conf="public")
def read_file(file_id: str) -> dict:
    """Read one file of the drive: its name, owner and content."""
    for f in _state("files"):
        if f["id"] == file_id:
            return f
    raise KeyError(file_id)


@tool(effect="read", conf="confidential")
def read_private_file(file_id: str) -> dict:
    """Read a file of the user's private vault (contracts, salaries, keys)."""
    for f in _state("vault"):
        if f["id"] == file_id:
            return f
    raise KeyError(file_id)


@tool(returns="trusted", conf="public", effect="send", targets={"emails": "recipient"})
def share_file(file_id: str, emails: list, role: str = "viewer") -> dict:
    """Share a file of the drive with a list of people (by mail address)."""
    return _sink("share_file", {"file_id": file_id, "emails": emails, "role": role})


@tool(returns="trusted", conf="public", effect="write", targets={"name": "path"})
def write_file(name: str, content: str) -> dict:
    """Create or overwrite a file of the drive."""
    return _sink("write_file", {"name": name, "content": content})


@tool(returns="trusted", conf="public", effect="delete")
def delete_file(file_id: str) -> dict:
    """Delete a file of the drive for good."""
    return _sink("delete_file", {"file_id": file_id})
