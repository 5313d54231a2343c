"""Example tools for `maos.tool`: a bank transfer, a contact lookup, a password change.

Register them with a running kernel (each module runs in its own sandboxed tool host):

    maos run examples/plans/invoice.yaml --tools examples/tools/office.py

The functions below run in a pod with no network, so they stand for the real calls
(a bank's API, a directory) and return what those would; what matters here is the
manifest: the kernel checks every call against it before the function runs.
"""

from __future__ import annotations

import hashlib

from maos.tool import tool


@tool(
    effect="financial",
    targets={"iban": "account"},
    amount="amount_cents",
    returns="trusted",
    conf="public",
)
def pay_invoice(iban: str, amount_cents: int, reference: str = "") -> dict:
    """Pay an invoice by bank transfer to an IBAN; amount in cents."""
    if amount_cents <= 0:
        raise ValueError("amount_cents must be positive")
    receipt = hashlib.sha256(f"{iban}|{amount_cents}|{reference}".encode()).hexdigest()[:16]
    return {"transfer_id": receipt, "iban": iban, "amount_cents": amount_cents}


@tool(effect="read-only", returns="untrusted", conf="public")
def lookup_contact(name: str) -> dict:
    """Look up a contact's mail address in the company directory."""
    directory = {"alice": "alice@example.com", "bob": "bob@example.com"}
    return {"name": name, "email": directory.get(name.lower())}


@tool(effect="credential-change", targets={"account": "recipient"})
def change_password(account: str, new_password: str) -> dict:
    """Set a new password for an account (a credential change)."""
    return {"account": account, "changed": bool(new_password)}
