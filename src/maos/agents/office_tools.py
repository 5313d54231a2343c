"""Example tools (`maos.tool`): a bank transfer, a directory, accounts, SMS.

A plan names this module as ``tool_modules: [office_tools]``; the demo and the security
scenarios use it too. Like any user's tools they run in the sandboxed tool host (no
network there), so each returns what the real service would; whether a call happened is
read from the WAL, where the kernel logged it before it ran.
"""

from __future__ import annotations

import hashlib

from maos.tool import tool


def _receipt(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


@tool(
    effect="financial",
    targets={"iban": "account"},
    amount="amount_cents",
    conf="public",
    returns="trusted",
)
def pay_invoice(iban: str, amount_cents: int, reference: str = "") -> dict[str, object]:
    """Pay an invoice by bank transfer to an IBAN; the amount is in cents."""
    if amount_cents <= 0:
        raise ValueError("amount_cents must be positive")
    return {"transfer_id": _receipt(iban, amount_cents, reference), "amount_cents": amount_cents}


@tool(effect="read-only", returns="untrusted", conf="public")
def lookup_contact(name: str) -> dict[str, object]:
    """Look up a person's mail address and phone number in the company directory."""
    people = {"alice": ("alice@example.com", "+4915112345678")}
    email, phone = people.get(name.lower(), (None, None))
    return {"name": name, "email": email, "phone": phone}


@tool(effect="credential-change", conf="public")
def change_password(account: str, new_password: str) -> dict[str, object]:
    """Set a new password for a user account."""
    return {"account": account, "changed": bool(new_password)}


@tool(effect="irreversible", conf="public")
def delete_customer(customer_id: str) -> dict[str, object]:
    """Delete a customer record for good."""
    return {"deleted": customer_id}


@tool(effect="external-communication", targets={"phone": "phone"}, conf="public")
def send_sms(phone: str, text: str) -> dict[str, object]:
    """Send a text message to a phone number."""
    return {"sms_id": _receipt(phone, text)}
