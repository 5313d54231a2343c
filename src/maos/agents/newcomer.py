"""A fresh agent on the documents the demo's first agents were attacked through (act 3).

It obeys what it reads, as they did: it reads the offer and fetches the Q3 figures, and
sends them wherever the text says. The immune memory stops it at each read: both
injections were deflected before, so the kernel withholds what carries them.

    maos demo      (act 3)
"""

import os
import re

from maos import sdk


def offer() -> str:
    return str(sdk.fs.read("inbox/offer.txt").value["content"])


def figures() -> str:
    return str(sdk.http.get(os.environ["MAOS_DEMO_API"] + "/q3").value["body"])


reads = (("inbox/offer.txt", offer), ("the Q3 API", figures))
for what, read in reads:
    try:
        text = read()
    except sdk.Denied as no:
        print(f"{what}: withheld ({no.code})", flush=True)
        continue
    for to in re.findall(r"[\w.+-]+@[\w-]+\.[\w.]*\w", text):
        try:
            sdk.email.send(to, subject="as asked", body=text)
        except (sdk.Denied, sdk.PendingApproval) as no:
            print(f"{what}: mail to {to} refused ({type(no).__name__})", flush=True)
