"""Capability tokens with real Ed25519 keys and real Biscuit tokens; no mocks, no clocks."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import stat
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from biscuit_auth import (
    AuthorizationError,
    AuthorizerBuilder,
    Biscuit,
    BiscuitBuilder,
    BlockBuilder,
    Fact,
    KeyPair,
    PublicKey,
    UnverifiedBiscuit,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maos.kernel import tokens
from maos.kernel.errors import TokenError
from maos.kernel.tokens import (
    DEFAULT_TTL,
    Grant,
    RevocationList,
    TokenAuthority,
    attenuate,
)
from maos.kernel.types import Allow, Cost, Deny, Intent

NOW = 1_750_000_000.0
NODE = "node-a"
AGENT = "agent-1"
TASK = "task-1"
GRANTS = (Grant("fs.write", "reports/*", 500), Grant("email.send", "cfo@example.com"))


@pytest.fixture
def authority(tmp_path: Path) -> TokenAuthority:
    return TokenAuthority(tmp_path / "keys", NODE)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> TokenAuthority:
    """One authority for the property tests, which never revoke."""
    return TokenAuthority(tmp_path_factory.mktemp("shared") / "keys", NODE)


def mint(authority: TokenAuthority, **overrides: object) -> str:
    args: dict[str, object] = {"agent_id": AGENT, "task_id": TASK, "grants": GRANTS, "now": NOW}
    return authority.mint(**(args | overrides))  # type: ignore[arg-type]


def authorize(authority: TokenAuthority, token: str, **overrides: object) -> Allow | Deny:
    args: dict[str, object] = {
        "agent_id": AGENT,
        "op": "fs.write",
        "resource": "reports/q3.md",
        "amount_cents": 0,
        "now": NOW + 1,
    }
    return authority.authorize(token, **(args | overrides))  # type: ignore[arg-type]


def root_of(token: str) -> PublicKey:
    """The root public key, as a holder learns it from the token's authority caveat."""
    return PublicKey(f"ed25519/{json.loads(caveat_json_of(token, 0))['key']}")


def caveat_json_of(token: str, index: int) -> str:
    first = UnverifiedBiscuit.from_base64(token).block_source(index).partition("\n")[0]
    return first[len('maos_caveat("') : -len('");')]


def deny_code(authority: TokenAuthority, token: str, **overrides: object) -> str:
    decision = authorize(authority, token, **overrides)
    assert isinstance(decision, Deny)
    return decision.code


def append_by_hand(token: str, root: PublicKey, block: BlockBuilder) -> str:
    """What a holder with biscuit_auth, and not our `attenuate`, can do."""
    return Biscuit.from_base64(token, root).append(block).to_base64()


def caveat_block(caveat_json: str, checks: str) -> BlockBuilder:
    block = BlockBuilder(checks)
    block.add_fact(Fact("maos_caveat({j})", {"j": caveat_json}))
    return block


def tamper(token: str) -> str:
    """Change one letter of an op name inside the signed bytes; the token still decodes."""
    raw = bytearray(base64.urlsafe_b64decode(token))
    at = raw.find(b"fs.write")
    raw[at + 3] = ord("W")
    return base64.urlsafe_b64encode(bytes(raw)).decode()


# -- every way a token fails, each with its own code -------------------------------------


def test_every_failure_is_denied_with_its_own_code(tmp_path: Path) -> None:
    ours = TokenAuthority(tmp_path / "keys", NODE)
    good = mint(ours)
    root = root_of(good)
    revoked = mint(ours, task_id="task-2")
    ours.revoke(revoked)
    wider = caveat_block(
        '{"exp":null,"grants":[["fs.*","*",null]],"kind":"attenuation","v":1}',
        'check if operation($op), resource($r), $op.starts_with("fs."), $r.starts_with("");\n',
    )
    cases: dict[str, tuple[str, dict[str, object]]] = {
        "FORGED": (mint(TokenAuthority(tmp_path / "other", NODE)), {}),
        "TAMPERED": (tamper(good), {}),
        "EXPIRED": (good, {"now": NOW + DEFAULT_TTL["sovereign"]}),
        "REVOKED": (revoked, {}),
        "OVER_ATTENUATED": (append_by_hand(good, root, wider), {}),
        "UNSUPPORTED_BLOCK": (
            append_by_hand(good, root, BlockBuilder('check if operation("fs.write");')),
            {},
        ),
        "WRONG_AUDIENCE": (mint(ours, audience="node-b"), {}),
        "WRONG_HOLDER": (good, {"agent_id": "agent-2"}),
        "NOT_COVERED": (good, {"resource": "finance/payroll.csv"}),
        "MISSING": ("", {}),
        "MALFORMED": ("this is not a token", {}),
    }
    codes = {}
    for name, (token, overrides) in cases.items():
        decision = authorize(ours, token, **overrides)
        assert isinstance(decision, Deny), name
        assert decision.check == "capability"
        assert decision.reason.endswith("."), decision.reason
        codes[name] = decision.code
    assert codes == {name: f"DSC.CAPABILITY.{name}" for name in cases}
    assert len(set(codes.values())) == 11
    assert authorize(ours, good) == Allow(check="capability")


def test_forged_token_claiming_our_key_id_is_tampered(authority: TokenAuthority) -> None:
    """The key id is public, so a forger may copy it; the signature still gives them away."""
    token = mint(authority)
    printed = Biscuit.from_base64(token, root_of(token)).block_source(0)
    first, _, checks = printed.partition("\n")
    builder = BiscuitBuilder()
    builder.merge(caveat_block(first[len('maos_caveat("') : -len('");')], checks))
    builder.set_root_key_id(authority.root_key_id)
    forged = builder.build(KeyPair().private_key).to_base64()
    assert deny_code(authority, forged) == "DSC.CAPABILITY.TAMPERED"


def test_later_expiry_appended_by_hand_is_over_attenuated(authority: TokenAuthority) -> None:
    token = mint(authority)
    later = int(NOW) + 10 * 3600
    stamp = datetime.fromtimestamp(later, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    block = caveat_block(
        f'{{"exp":{later},"grants":null,"kind":"attenuation","v":1}}',
        f"check if time($t), $t < {stamp};\n",
    )
    hand = append_by_hand(token, root_of(token), block)
    assert deny_code(authority, hand) == "DSC.CAPABILITY.OVER_ATTENUATED"


def test_string_that_fakes_printed_checks_is_unsupported(authority: TokenAuthority) -> None:
    """Biscuit prints strings unescaped: one fact can print like our fact plus our check."""
    caveat = '{"exp":null,"grants":[["fs.write","reports/a",null]],"kind":"attenuation","v":1}'
    spliced = caveat + '");\ncheck if operation("fs.write"), resource("reports/a'
    block = BlockBuilder("")
    block.add_fact(Fact("maos_caveat({j})", {"j": spliced}))
    token = mint(authority)
    hand = append_by_hand(token, root_of(token), block)
    printed = Biscuit.from_base64(hand, root_of(token)).block_source(1)
    assert printed == (
        f'maos_caveat("{caveat}");\ncheck if operation("fs.write"), resource("reports/a");\n'
    )
    assert deny_code(authority, hand) == "DSC.CAPABILITY.UNSUPPORTED_BLOCK"


def test_inspect_raises_the_deny_code(authority: TokenAuthority, tmp_path: Path) -> None:
    forged = mint(TokenAuthority(tmp_path / "other", NODE))
    with pytest.raises(TokenError) as caught:
        authority.inspect(forged)
    assert caught.value.code == "DSC.CAPABILITY.FORGED"


def test_inspect_shows_effective_grants_and_expiry(authority: TokenAuthority) -> None:
    narrower = (Grant("fs.write", "reports/q3/*", 100),)
    token = attenuate(mint(authority), grants=narrower, ttl=60, now=NOW + 5)
    info = authority.inspect(token)
    assert (info.agent_id, info.task_id, info.audience) == (AGENT, TASK, NODE)
    assert info.grants == narrower
    assert info.expires_at == math.floor(NOW + 5 + 60)
    assert info.blocks == 2
    assert len(info.revocation_ids) == 2


# -- attenuation --------------------------------------------------------------------------


def test_attenuated_token_allows_only_the_narrower_grant(authority: TokenAuthority) -> None:
    token = attenuate(mint(authority), grants=[Grant("fs.write", "reports/q3/*", 100)], now=NOW)
    assert isinstance(authorize(authority, token, resource="reports/q3/a.md"), Allow)
    assert deny_code(authority, token, resource="reports/q4.md") == "DSC.CAPABILITY.NOT_COVERED"
    assert deny_code(authority, token, resource="reports/q3/a", amount_cents=101) == (
        "DSC.CAPABILITY.NOT_COVERED"
    )


@pytest.mark.parametrize(
    ("grants", "ttl"),
    [
        ([Grant("fs.write", "*")], None),  # wider resource
        ([Grant("fs.*", "reports/*", 500)], None),  # wider op
        ([Grant("fs.write", "reports/*")], None),  # no cap where the parent has one
        ([Grant("fs.write", "reports/*", 501)], None),  # higher cap
        ([Grant("email.*", "cfo@example.com")], None),  # wider op, same recipient
        (None, DEFAULT_TTL["sovereign"] + 1),  # later expiry
    ],
)
def test_attenuate_refuses_to_widen(
    authority: TokenAuthority, grants: Sequence[Grant] | None, ttl: float | None
) -> None:
    with pytest.raises(TokenError) as caught:
        attenuate(mint(authority), grants=grants, ttl=ttl, now=NOW)
    assert caught.value.code == "TOKEN.WIDENS"


def test_attenuate_needs_something_to_narrow(authority: TokenAuthority) -> None:
    with pytest.raises(TokenError) as caught:
        attenuate(mint(authority), now=NOW)
    assert caught.value.code == "TOKEN.NOTHING_TO_ATTENUATE"


def test_attenuate_refuses_hand_written_blocks(authority: TokenAuthority) -> None:
    block = BlockBuilder('check if operation("fs.write");')
    token = mint(authority)
    hand = append_by_hand(token, root_of(token), block)
    with pytest.raises(TokenError) as caught:
        attenuate(hand, ttl=10, now=NOW)
    assert caught.value.code == "DSC.CAPABILITY.UNSUPPORTED_BLOCK"


# -- grants, mint, TTLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "resource", "cap"),
    [
        ("fs", "x", None),  # not an op name
        ("*", "x", None),  # no wildcard for every op
        ("fs.write", "*@example.com", None),  # '*' only as a trailing prefix
        ("fs.write", 'a"b', None),  # would print ambiguously in Datalog
        ("fs.write", "x", -1),
        ("fs.write", "x", True),
        ("fs.write", "x", 2**63),
    ],
)
def test_bad_grants_are_refused(op: str, resource: str, cap: int | None) -> None:
    with pytest.raises(TokenError) as caught:
        Grant(op, resource, cap)
    assert caught.value.code == "TOKEN.BAD_GRANT"


def test_mint_needs_grants(authority: TokenAuthority) -> None:
    with pytest.raises(TokenError) as caught:
        mint(authority, grants=[])
    assert caught.value.code == "TOKEN.NO_GRANTS"


@pytest.mark.parametrize("node_type", sorted(DEFAULT_TTL))
def test_ttl_defaults_by_node_type(tmp_path: Path, node_type: str) -> None:
    authority = TokenAuthority(tmp_path / "keys", NODE, node_type)
    info = authority.inspect(mint(authority))
    assert info.expires_at == math.floor(NOW + DEFAULT_TTL[node_type])


def test_ttl_above_the_cap_is_refused(tmp_path: Path) -> None:
    pawn = TokenAuthority(tmp_path / "keys", NODE, "pawn")
    with pytest.raises(TokenError) as caught:
        mint(pawn, ttl=3600)
    assert caught.value.code == "TOKEN.TTL_TOO_LONG"


def test_token_expires_on_the_second(authority: TokenAuthority) -> None:
    token = mint(authority, ttl=10.5)
    assert isinstance(authorize(authority, token, now=NOW + 9.999), Allow)
    assert deny_code(authority, token, now=NOW + 10) == "DSC.CAPABILITY.EXPIRED"


# -- keys ---------------------------------------------------------------------------------


def test_root_key_is_created_owner_only(tmp_path: Path) -> None:
    TokenAuthority(tmp_path / "keys", NODE)
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "root.key").stat().st_mode) == 0o600


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    TokenAuthority(tmp_path / "keys", NODE)
    (tmp_path / "keys" / "root.key").chmod(0o644)
    with pytest.raises(TokenError) as caught:
        TokenAuthority(tmp_path / "keys", NODE)
    assert caught.value.code == "TOKEN.KEY_PERMISSIONS"


def test_key_survives_a_restart(tmp_path: Path) -> None:
    token = mint(TokenAuthority(tmp_path / "keys", NODE))
    assert isinstance(authorize(TokenAuthority(tmp_path / "keys", NODE), token), Allow)


# -- revocation and the cache ---------------------------------------------------------------


def test_revoking_after_caching_denies_the_next_action(authority: TokenAuthority) -> None:
    token = mint(authority)
    assert isinstance(authorize(authority, token), Allow)
    authority.revoke(token)
    assert deny_code(authority, token) == "DSC.CAPABILITY.REVOKED"
    assert authority.verifications == 1


def test_revoking_a_parent_revokes_what_was_attenuated_from_it(
    authority: TokenAuthority,
) -> None:
    parent = mint(authority)
    child = attenuate(parent, ttl=60, now=NOW)
    authority.revoke(parent)
    assert deny_code(authority, child) == "DSC.CAPABILITY.REVOKED"


def test_revocations_replayed_into_a_fresh_list_deny(tmp_path: Path) -> None:
    first = TokenAuthority(tmp_path / "keys", NODE)
    token = mint(first)
    ids = first.revoke(token)
    replayed = RevocationList()
    replayed.add(ids)
    rebooted = TokenAuthority(tmp_path / "keys", NODE, revocations=replayed)
    assert deny_code(rebooted, token) == "DSC.CAPABILITY.REVOKED"


def test_revocation_epoch_moves_only_on_change() -> None:
    revocations = RevocationList()
    assert revocations.add(["ab", "cd"]) == 1
    assert revocations.add(["cd"]) == 1
    assert revocations.add([]) == 1
    assert revocations.add(["ef"]) == 2
    assert "ab" in revocations
    assert revocations.ids() == frozenset({"ab", "cd", "ef"})
    with pytest.raises(TokenError):
        revocations.add("abcd")


def test_second_authorize_does_not_verify_signatures_again(authority: TokenAuthority) -> None:
    token = mint(authority)
    for _ in range(3):
        assert isinstance(authorize(authority, token), Allow)
    assert authority.verifications == 1


def test_failed_verifications_are_cached_too(authority: TokenAuthority) -> None:
    bad = tamper(mint(authority))
    assert deny_code(authority, bad) == deny_code(authority, bad) == "DSC.CAPABILITY.TAMPERED"
    assert authority.verifications == 1


def test_cache_is_bounded(tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "keys", NODE, cache_size=2)
    first, second, third = (mint(authority, task_id=f"task-{i}") for i in range(3))
    for token in (first, second, third, first):
        authorize(authority, token)
    assert authority.verifications == 4  # ``first`` was evicted by ``third``


def test_cache_is_bounded_by_the_characters_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = TokenAuthority(tmp_path / "keys", NODE)
    first, second, third = (mint(authority, task_id=f"task-{i}") for i in range(3))
    monkeypatch.setattr(tokens, "_CACHE_CHARS", len(first) + len(second) + len(third) - 1)
    for token in (first, second, third, first):
        authorize(authority, token)
    assert authority.verifications == 4  # two entries fit the character budget, not three
    kept = sum(len(key) for key in authority._cache)
    assert authority._cache_chars == kept <= tokens._CACHE_CHARS


def test_a_changed_token_string_is_never_served_from_the_cache(
    authority: TokenAuthority,
) -> None:
    token = mint(authority)
    assert isinstance(authorize(authority, token), Allow)
    assert deny_code(authority, tamper(token)) == "DSC.CAPABILITY.TAMPERED"
    assert deny_code(authority, token + "A") == "DSC.CAPABILITY.MALFORMED"
    assert authority.verifications == 3


def test_an_equal_token_in_another_string_hits_the_cache_and_sees_revocation(
    authority: TokenAuthority,
) -> None:
    token = mint(authority)
    copy = "".join(list(token))  # equal, but another object, as after a fresh parse
    assert copy is not token
    assert isinstance(authorize(authority, token), Allow)
    assert isinstance(authorize(authority, copy), Allow)
    assert authority.verifications == 1
    authority.revoke(token)
    assert deny_code(authority, copy) == "DSC.CAPABILITY.REVOKED"


def test_a_str_subclass_cannot_borrow_another_tokens_cache_entry(
    authority: TokenAuthority,
) -> None:
    token = mint(authority)
    assert isinstance(authorize(authority, token), Allow)

    class Sly(str):
        """Claims to equal whatever it is compared with."""

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash(token)

    assert deny_code(authority, Sly("x")) == "DSC.CAPABILITY.MALFORMED"
    with pytest.raises(TokenError):
        authority.inspect(Sly("x"))


def test_tokens_with_equal_grants_share_one_compiled_check_and_no_more(
    authority: TokenAuthority,
) -> None:
    first, second = (mint(authority, agent_id=f"agent-{i}") for i in (1, 2))
    narrow = mint(authority, grants=[Grant("fs.write", "reports/q3/*", 100)])
    entries = [authority._verified(t) for t in (first, second, narrow)]
    covers = [getattr(entry, "covers", None) for entry in entries]
    assert covers[0] is covers[1] is not None
    assert covers[2] is not covers[0]
    assert isinstance(authorize(authority, narrow, resource="reports/q3/a.md"), Allow)
    assert deny_code(authority, narrow, resource="reports/q4.md") == "DSC.CAPABILITY.NOT_COVERED"
    assert deny_code(authority, narrow, amount_cents=101) == "DSC.CAPABILITY.NOT_COVERED"
    assert isinstance(authorize(authority, first, resource="reports/q4.md"), Allow)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"target": "reports/x", "extra_targets": ("reports/y",)},
        {"target": "reports/x", "extra_targets": ("reports/y", "elsewhere")},
        {"agent_id": "agent-2"},
        {"task_id": "task-2"},
        {"op": "email.send", "target": "cfo@example.com"},
        {"cost": Cost(money_cents=501)},
        {"token": ""},
    ],
)
def test_authorize_intent_answers_exactly_like_authorize(
    authority: TokenAuthority, fields: dict[str, object]
) -> None:
    values: dict[str, object] = {
        "intent_id": "i-1",
        "agent_id": AGENT,
        "task_id": TASK,
        "op": "fs.write",
        "target": "reports/q3.md",
        "idempotency_key": "k-1",
        "token": mint(authority),
        "cost": Cost(money_cents=500),
    }
    intent = Intent(**(values | fields))  # type: ignore[arg-type]
    expected = authority.authorize(
        intent.token,
        agent_id=intent.agent_id,
        op=intent.op,
        resource=intent.target,
        amount_cents=intent.cost.money_cents,
        now=NOW + 1,
        task_id=intent.task_id,
        extra_resources=intent.extra_targets,
    )
    assert authority.authorize_intent(intent, NOW + 1) == expected


# -- properties: attenuation only narrows; the compiled path is Biscuit's Datalog ------------

OPS = ["fs.read", "fs.write", "fs.*", "email.send", "email.*"]
RESOURCES = ["*", "reports/*", "reports/q3/*", "reports/q3/a.md", "reports/b.md", "cfo@x.org"]
CAPS = [None, 0, 100, 500]
grant_lists = st.lists(
    st.builds(Grant, st.sampled_from(OPS), st.sampled_from(RESOURCES), st.sampled_from(CAPS)),
    min_size=1,
    max_size=3,
)
action_ops = st.sampled_from([*OPS, "fs.delete", "fsx.read", "email.sendx", "fs."])
action_resources = st.sampled_from(
    [*RESOURCES, "reports/q3/zz", "reports", "", "report", "reports/q3/a.mdx"]
) | st.text(max_size=12)
action_amounts = st.sampled_from([-1, 0, 1, 99, 100, 101, 500, 501, 10**12])
times = st.sampled_from([NOW, NOW + 9.5, NOW + 10, NOW + 99, NOW + 3599.9, NOW + 3600])
actions = st.tuples(action_ops, action_resources, action_amounts, times)
ttls = st.none() | st.sampled_from([10.0, 100.0, 3600.0, 3601.0])
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def allows(grants: Sequence[Grant], op: str, resource: str, amount: int) -> bool:
    """Reference semantics of a grant list, written out independently of the kernel."""

    def match(pattern: str, value: str) -> bool:
        return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern

    return any(
        match(g.op, op)
        and match(g.resource, resource)
        and (g.max_amount_cents is None or amount <= g.max_amount_cents)
        for g in grants
    )


def widest_action(grant: Grant) -> tuple[str, str, int]:
    """An action of ``grant`` that only a grant covering all of ``grant`` also allows."""
    op = grant.op[:-1] + "~zz" if grant.op.endswith("*") else grant.op
    resource = grant.resource[:-1] + "~zz" if grant.resource.endswith("*") else grant.resource
    return op, resource, 2**62 if grant.max_amount_cents is None else grant.max_amount_cents


def near(grant: Grant) -> st.SearchStrategy[Grant]:
    """Grants around ``grant``: mostly narrower, sometimes wider, so both answers occur."""
    stem = grant.resource.removesuffix("*")
    return st.builds(
        Grant,
        st.sampled_from([grant.op, grant.op, *OPS]),
        st.sampled_from([grant.resource, stem + "q3/*", stem + "q3.md", *RESOURCES]),
        st.sampled_from([grant.max_amount_cents, grant.max_amount_cents, *CAPS]),
    )


def requests(held: Sequence[Grant]) -> st.SearchStrategy[tuple[list[Grant] | None, float | None]]:
    grants = st.lists(st.sampled_from(held).flatmap(near), min_size=1, max_size=3) | grant_lists
    return st.tuples(grants, ttls) | st.tuples(st.none(), ttls.filter(lambda t: t is not None))


def probes_around(grants: Sequence[Grant]) -> list[tuple[str, str, int, float]]:
    """Actions at the edges of ``grants``: their widest action, one cent more, one second late."""
    probes = []
    for grant in grants:
        op, resource, amount = widest_action(grant)
        probes += [(op, resource, amount, NOW), (op, resource, amount + 1, NOW)]
        probes += [(op, resource, 0, NOW + 99), (op, resource + "/x", 0, NOW + 3600)]
    return probes


@PROPERTY
@given(parent=grant_lists, data=st.data())
def test_attenuation_never_allows_what_the_parent_denies(
    shared: TokenAuthority, parent: list[Grant], data: st.DataObject
) -> None:
    token, held, expiry = mint(shared, grants=parent), parent, math.floor(NOW + 3600)
    for _ in range(data.draw(st.integers(1, 3), label="steps")):
        grants, ttl = data.draw(requests(held), label="request")
        narrows = (grants is None or all(allows(held, *widest_action(g)) for g in grants)) and (
            ttl is None or math.floor(NOW + ttl) <= expiry
        )
        try:
            child = attenuate(token, grants=grants, ttl=ttl, now=NOW)
        except TokenError as exc:
            assert exc.code == "TOKEN.WIDENS"
            assert not narrows
            continue
        assert narrows
        probes = data.draw(st.lists(actions, max_size=4), label="probes")
        for op, resource, amount, now in probes + probes_around([*parent, *(grants or ())]):
            action = {"op": op, "resource": resource, "amount_cents": amount, "now": now}
            if isinstance(authorize(shared, child, **action), Allow):
                assert isinstance(authorize(shared, token, **action), Allow)
        token, held = child, grants if grants is not None else held
        expiry = expiry if ttl is None else math.floor(NOW + ttl)


def biscuit_allows(
    token: str, root: PublicKey, holder: str, action: tuple[str, str, int, float]
) -> bool:
    """A standard Biscuit authorizer with the facts the vocabulary's checks ask for."""
    op, resource, amount, now = action
    builder = AuthorizerBuilder(
        "operation({op}); resource({r}); amount({a}); time({t}); node({n}); holder({h});"
        " allow if true;",
        {
            "op": op,
            "r": resource,
            "a": amount,
            "t": datetime.fromtimestamp(now, UTC),
            "n": NODE,
            "h": holder,
        },
    )
    limits = builder.limits()
    limits.max_time = timedelta(seconds=10)  # the 1 ms default can deny on a busy machine
    builder.set_limits(limits)
    try:
        builder.build(Biscuit.from_base64(token, root)).authorize()
    except AuthorizationError:
        return False
    return True


@PROPERTY
@given(
    parent=grant_lists,
    holder=st.sampled_from([AGENT, AGENT, "agent-2"]),
    audience=st.sampled_from([NODE, NODE, "node-b"]),
    data=st.data(),
)
def test_compiled_path_decides_like_biscuit_datalog(
    shared: TokenAuthority, parent: list[Grant], holder: str, audience: str, data: st.DataObject
) -> None:
    token = mint(shared, grants=parent, audience=audience)
    for _ in range(data.draw(st.integers(0, 2), label="attenuations")):
        grants, ttl = data.draw(requests(parent), label="request")
        with contextlib.suppress(TokenError):  # if it widens, the parent is a fine sample too
            token = attenuate(token, grants=grants, ttl=ttl, now=NOW)
    root = root_of(token)
    for probe in data.draw(st.lists(actions, max_size=4), label="probes") + probes_around(parent):
        op, resource, amount, now = probe
        fast = shared.authorize(
            token, agent_id=holder, op=op, resource=resource, amount_cents=amount, now=now
        )
        assert isinstance(fast, Allow) == biscuit_allows(token, root, holder, probe), fast
