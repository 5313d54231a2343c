"""Calendar tools of the assistants suite: events with nested participant lists.

Run in the tool host; ``WORLD`` is replaced with the suite's world directory.
"""

from _world import _sink, _state  # staged: the runner puts _world.py's text here

from maos.tool import tool


@tool(effect="read", conf="public")
def list_events(day: str = "") -> dict:
    """List the calendar's events: title, time, description and attendees of each."""
    return {"day": day, "events": _state("events")}


@tool(
    returns="trusted",
    conf="public",
    effect=["write", "send"],
    targets={"attendees[].email": "recipient"},
)
def create_event(title: str, start: str, attendees: list, description: str = "") -> dict:
    """Create a calendar event and send its invitation to every attendee ({email, name})."""
    args = {"title": title, "start": start, "attendees": attendees, "description": description}
    return _sink("create_event", args)


@tool(returns="trusted", conf="public", effect="send", targets={"attendees[].email": "recipient"})
def add_attendees(event_id: str, attendees: list) -> dict:
    """Invite more people ({email, name}) to an existing event."""
    return _sink("add_attendees", {"event_id": event_id, "attendees": attendees})


@tool(returns="trusted", conf="public", effect=["delete", "send"])
def cancel_event(event_id: str) -> dict:
    """Cancel an event; every attendee is told it is off."""
    return _sink("cancel_event", {"event_id": event_id})
