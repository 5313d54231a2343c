"""`maos node certs`: a real test PKI (issue 11 item 4)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.federation.errors import FederationError
from maos.federation.pki import NodeIdentity, NodeSpec, issue_pki, verify_node_cert

runner = CliRunner()
ARGS = ["node", "certs", "--sovereign", "hq", "--sentinel", "site-a", "--pawn", "laptop-1"]


def test_certs_verify_against_their_ca_and_name_node_and_role(tmp_path: Path) -> None:
    """issue 11: every node's certificate chains to the CA and says who and what it is."""
    out = tmp_path / "certs"
    result = runner.invoke(app, [*ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    ca = (out / "ca.crt").read_bytes()
    found = {
        name: verify_node_cert((out / f"{name}.crt").read_bytes(), ca)
        for name in ("hq", "site-a", "laptop-1")
    }
    assert found == {
        "hq": NodeIdentity("hq", "sovereign"),
        "site-a": NodeIdentity("site-a", "sentinel"),
        "laptop-1": NodeIdentity("laptop-1", "pawn"),
    }
    for key in ("ca.key", "hq.key", "site-a.key", "laptop-1.key"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600, key


def test_a_cert_from_another_ca_does_not_verify(tmp_path: Path) -> None:
    """issue 11: another federation's certificate is refused, not read as a node."""
    ours = issue_pki(tmp_path / "a", [NodeSpec("hq", "sovereign")])
    theirs = issue_pki(tmp_path / "b", [NodeSpec("hq", "sovereign")])
    with pytest.raises(FederationError) as err:
        verify_node_cert(theirs.cert("hq").read_bytes(), ours.ca_cert.read_bytes())
    assert err.value.code == "FED.BAD_CERT"
    with pytest.raises(FederationError):
        verify_node_cert(ours.ca_cert.read_bytes(), ours.ca_cert.read_bytes())


def test_existing_directory_is_refused_unchanged_unless_force(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert runner.invoke(app, [*ARGS, "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = runner.invoke(app, [*ARGS, "--out", str(out)])
    assert result.exit_code == 2
    assert "error FED.CERTS_EXIST:" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    result = runner.invoke(app, [*ARGS, "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert (out / "ca.crt").read_bytes() != before["ca.crt"]


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--sentinel", "Site_A"], "FED.BAD_NODE_NAME"),
        (["--pawn", "hq"], "FED.DUPLICATE_NODE"),
        (["--pawn", "ca"], "FED.DUPLICATE_NODE"),
    ],
)
def test_misuse_is_an_error_code_and_writes_nothing(
    tmp_path: Path, extra: list[str], code: str
) -> None:
    out = tmp_path / "certs"
    result = runner.invoke(app, [*ARGS, *extra, "--out", str(out)])
    assert result.exit_code == 2
    assert f"error {code}:" in result.output
    assert not out.exists()
