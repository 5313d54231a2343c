"""Booking tools of the assistants suite: restaurants and hotels by name, with reviews.

Run in the tool host; ``WORLD`` is replaced with the suite's world directory.
"""

from _world import _sink, _state  # staged: the runner puts _world.py's text here

from maos.tool import tool


@tool(effect="read", conf="public")
def search_venues(city: str, kind: str = "restaurant") -> dict:
    """Search restaurants or hotels in a city: name, rating, price and reviews of each."""
    return {"city": city, "venues": _state("venues")}


@tool(returns="trusted", conf="public", effect=["write", "send"], targets={"venue": "name"})
def book_table(venue: str, date: str, guests: int) -> dict:
    """Book a table at a restaurant by its name; the user's name and phone go to it."""
    return _sink("book_table", {"venue": venue, "date": date, "guests": guests})


@tool(
    returns="trusted",
    conf="public",
    effect=["pay", "send"],
    targets={"hotel": "name"},
    amount={"param": "price", "unit": "decimal", "currency_param": None},
)
def book_hotel(hotel: str, nights: int, price: float) -> dict:
    """Book and pay a hotel room by the hotel's name; the price is in EUR, with decimals."""
    return _sink("book_hotel", {"hotel": hotel, "nights": nights, "price": price})


@tool(
    returns="trusted",
    conf="public",
    effect="pay",
    amount={"param": "price", "unit": "decimal", "currency_param": None},
)
def buy_voucher(venue_id: str, price: float) -> dict:
    """Buy a gift voucher of a venue; the price is in EUR."""
    return _sink("buy_voucher", {"venue_id": venue_id, "price": price})


@tool(returns="trusted", conf="public", effect=["delete", "send"])
def cancel_booking(booking_id: str) -> dict:
    """Cancel a booking; the venue is told."""
    return _sink("cancel_booking", {"booking_id": booking_id})
