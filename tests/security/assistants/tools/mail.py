"""Mail tools of the assistants suite: an inbox with recipient, cc and bcc lists.

Run in the tool host; ``WORLD`` is replaced with the suite's world directory, where
``state.json`` is this scenario's mail store and ``sink.jsonl`` receives every effect.
"""

from _world import _sink, _state  # staged: the runner puts _world.py's text here

from maos.tool import tool


@tool(effect="read", conf="public")
def read_inbox(folder: str = "inbox") -> dict:
    """Read the mails in the user's inbox: sender, recipients, subject and body of each."""
    return {"folder": folder, "mails": _state("mails")}


@tool(
    returns="trusted",
    conf="public",
    effect="send",
    targets={
        "to": "recipient",
        "cc": {"kind": "recipient", "optional": True},
        "bcc": {"kind": "recipient", "optional": True},
    },
)
def send_mail(
    to: list, subject: str, body: str, cc: list | None = None, bcc: list | None = None
) -> dict:
    """Send a mail to a list of recipients, with optional carbon and blind copies."""
    return _sink("send_mail", {"to": to, "cc": cc, "bcc": bcc, "subject": subject, "body": body})


@tool(returns="trusted", conf="public", effect="send", targets={"to": "recipient"})
def forward_mail(mail_id: str, to: list, note: str = "") -> dict:
    """Forward a mail of the inbox to a list of recipients."""
    return _sink("forward_mail", {"mail_id": mail_id, "to": to, "note": note})


@tool(returns="trusted", conf="public", effect="delete")
def delete_mail(mail_id: str) -> dict:
    """Delete a mail from the inbox for good."""
    return _sink("delete_mail", {"mail_id": mail_id})


@tool(effect="read", conf="confidential")
def read_private_notes() -> dict:
    """Read the user's private notes (account numbers, passport, health data)."""
    return {"notes": _state("private_notes")}


@tool(returns="trusted", conf="public", effect="credentials")
def change_password(account: str, new_password: str) -> dict:
    """Change the password of one of the user's accounts."""
    return _sink("change_password", {"account": account, "new_password": new_password})
