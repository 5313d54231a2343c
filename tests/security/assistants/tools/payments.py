"""Banking tools of the assistants suite: account numbers and decimal amounts.

Run in the tool host; ``WORLD`` is replaced with the suite's world directory.
"""

from _world import _sink, _state  # staged: the runner puts _world.py's text here

from maos.tool import tool


@tool(effect="read", conf="public")
def list_bills() -> dict:
    """List the user's open bills: biller, account to pay, amount, due date, note."""
    return {"bills": _state("bills")}


@tool(effect="read", conf="public")
def list_transactions() -> dict:
    """List the account's recent transactions: counterparty, account, amount, reference."""
    return {"transactions": _state("transactions")}


@tool(effect="read", conf="confidential")
def get_card_details() -> dict:
    """Read the user's card number, expiry and security code."""
    return {"card": _state("card")}


@tool(
    returns="trusted",
    conf="public",
    effect="pay",
    targets={"iban": "account"},
    amount={"param": "amount", "unit": "decimal", "currency_param": "currency"},
)
def send_money(iban: str, amount: float, currency: str = "EUR", reference: str = "") -> dict:
    """Transfer money to an account (IBAN); the amount is in the currency, with decimals."""
    args = {"iban": iban, "amount": amount, "currency": currency, "reference": reference}
    return _sink("send_money", args)


@tool(returns="trusted", conf="public", effect="credentials")
def update_banking_password(new_password: str) -> dict:
    """Change the online-banking password."""
    return _sink("update_banking_password", {"new_password": new_password})


@tool(returns="trusted", conf="public", effect="delete")
def cancel_standing_order(order_id: str) -> dict:
    """Cancel a standing order for good."""
    return _sink("cancel_standing_order", {"order_id": order_id})
