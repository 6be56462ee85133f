"""`p2pfl roster propose|sign|merge|verify`: an operator changes the consortium by signed roster
versions, through `cli.main`; every bad input is one line and exit 2."""

import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.cli import main
from p2pfl.errors import EXIT_USAGE
from p2pfl.files.keys import save_key
from p2pfl.files.roster_file import ROSTERS_DIR, load_roster, stored_versions, write_roster
from p2pfl.protocol.identity import peer_id_of
from p2pfl.protocol.roster import Member, Roster
from p2pfl.protocol.roster_chain import parse_version

KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(8)]  # seeded
IDS = [peer_id_of(k) for k in KEYS]
NEW, OUTSIDER = 5, 7  # KEYS[5]: hospital-6's, or hospital-2's new one; KEYS[7]: no member's


def addr(i: int) -> str:
    return f"/ip4/127.0.0.1/tcp/{9001 + i}"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """tmp_path with roster.toml (hospital-1..5) and key files k1.key..k8.key; the cwd."""
    monkeypatch.chdir(tmp_path)
    for i, key in enumerate(KEYS):
        save_key(key, tmp_path / f"k{i + 1}.key")
    write_roster(tmp_path / "roster.toml", Roster([Member(f"hospital-{i + 1}", IDS[i], (addr(i),))
                                                   for i in range(5)]))
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["roster", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys, *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, ""), err
    return out


def refused(capsys, *argv: str) -> str:
    """The one error line of a command that must exit 2, and nothing on stdout."""
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE and out == ""
    assert err.startswith("p2pfl: error: ") and err.count("\n") == 1, err
    return err


def signed_copies(capsys, proposal: str, previous: str, *who: int) -> list[str]:
    """Each of `who` (key numbers from 1) signs its own copy of `proposal`."""
    copies = []
    for i in who:
        copy = proposal.replace(".toml", f"-{i}.toml")
        shutil.copy(proposal, copy)
        ok(capsys, "sign", copy, "--key", f"k{i}.key", "--previous", previous)
        copies.append(copy)
    return copies


def adopted(capsys, previous: str, out: str, change: list[str], round_: int, *who: int) -> str:
    """Propose `change` to `previous`, signed by `who` (key numbers from 1), merged into `out`."""
    ok(capsys, "propose", "--roster", previous, "--effective-round", str(round_), *change,
       "--out", "proposal.toml")
    ok(capsys, "merge", *signed_copies(capsys, "proposal.toml", previous, *who), "--out", out)
    for p in ("proposal.toml", *(f"proposal-{i}.toml" for i in who)):
        Path(p).unlink()
    return out


ADD_6 = ["--add", "hospital-6", IDS[NEW], addr(5)]


def test_a_sixth_hospital_is_admitted_by_three_signed_copies_merged(site, capsys):
    out = ok(capsys, "propose", "--roster", "roster.toml", "--effective-round", "10", *ADD_6,
             "--out", "v2.toml")
    lines = out.splitlines()
    assert lines[0] == "wrote v2.toml: roster version 2, from round 10"
    assert lines[2] == f"adds hospital-6 ({IDS[NEW]}) at {addr(5)}"
    assert lines[3].startswith("needs the signatures of 3 of version 1's 5 members: hospital-1, ")
    digest = lines[1].removeprefix("digest ")

    copies = signed_copies(capsys, "v2.toml", "roster.toml", 1, 3, 5)
    again = ok(capsys, "sign", copies[-1], "--key", "k5.key", "--previous", "roster.toml")  # replaced, once
    assert again.splitlines()[-1] == ("signed by 1 of version 1's 5 members (hospital-5), needs 3: "
                                      "2 more needed")
    merged = ok(capsys, "merge", *copies, "--out", "signed.toml")
    assert "3 signatures (hospital-1, hospital-3, hospital-5)" in merged

    chain = ok(capsys, "verify", "roster.toml", "signed.toml").splitlines()
    assert chain[0].startswith("roster.toml: version 1, from round 0, 5 members, trusted as given")
    assert chain[1] == (f"signed.toml: version 2, from round 10, 6 members, signed by hospital-1, "
                        f"hospital-3, hospital-5 (needs 3), digest {digest}")
    assert chain[2].startswith("chain ok")
    assert len(load_roster(site / "signed.toml")) == 6  # what a node loads: the members
    v2 = parse_version((site / "signed.toml").read_text())
    assert (v2.version, v2.digest(), len(v2.signatures)) == (2, digest, 3)
    assert stat.S_IMODE((site / "signed.toml").stat().st_mode) == 0o644


def test_too_few_signatures_do_not_verify(site, capsys):
    ok(capsys, "propose", "--roster", "roster.toml", "--effective-round", "10", *ADD_6, "--out", "v2.toml",
       "--key", "k1.key")
    out = ok(capsys, "sign", "v2.toml", "--key", "k2.key", "--previous", "roster.toml")
    assert out.splitlines()[-1].endswith("(hospital-1, hospital-2), needs 3: 1 more needed")
    err = refused(capsys, "verify", "roster.toml", "v2.toml")
    assert ("v2.toml: version 2 is signed by 2 of version 1's 5 members (hospital-1, hospital-2); "
            "it needs 3") in err


def test_a_removed_member_cannot_sign_a_later_version(site, capsys):
    adopted(capsys, "roster.toml", "v2.toml", ["--remove", "hospital-5"], 10, 1, 2, 3)
    ok(capsys, "propose", "--roster", "v2.toml", "--effective-round", "20", *ADD_6, "--out", "v3.toml",
       "--key", "k1.key")
    err = refused(capsys, "sign", "v3.toml", "--key", "k5.key", "--previous", "v2.toml")
    assert f"key file k5.key ({IDS[4]}) is not a member of roster version 2 (v2.toml)" in err
    for i in (5, 2, 3):  # without --previous nothing stops hospital-5 signing; verify does
        ok(capsys, "sign", "v3.toml", "--key", f"k{i}.key")
    err = refused(capsys, "verify", "roster.toml", "v2.toml", "v3.toml")
    assert f"v3.toml: version 3 is signed by {IDS[4]}, not a member of version 2" in err


def test_a_rotated_key_signs_the_next_version_and_the_old_one_no_longer_can(site, capsys):
    adopted(capsys, "roster.toml", "v2.toml", ["--rotate", "hospital-2", IDS[NEW]], 10, 2, 3, 4)
    assert load_roster(site / "v2.toml").by_name("hospital-2").peer_id == IDS[NEW]
    out = ok(capsys, "propose", "--roster", "v2.toml", "--effective-round", "12", "--address", "hospital-3",
             "/ip4/127.0.0.1/tcp/9103", "--out", "v3.toml", "--key", "k6.key")  # the new key
    assert "moves hospital-3 to /ip4/127.0.0.1/tcp/9103" in out.splitlines()
    err = refused(capsys, "sign", "v3.toml", "--key", "k2.key", "--previous", "v2.toml")  # the old key
    assert f"key file k2.key ({IDS[1]}) is not a member of roster version 2" in err
    for i in (1, 3):
        ok(capsys, "sign", "v3.toml", "--key", f"k{i}.key", "--previous", "v2.toml")
    chain = ok(capsys, "verify", "roster.toml", "v2.toml", "v3.toml").splitlines()
    assert "signed by hospital-2, hospital-1, hospital-3 (needs 3)" in chain[2]
    assert chain[3].startswith("chain ok")


def test_an_encrypted_key_signs_with_its_passphrase(site, capsys, monkeypatch):
    save_key(KEYS[0], site / "enc.key", b"s3cret")
    monkeypatch.setenv("P2PFL_TEST_PASS", "s3cret")
    ok(capsys, "propose", "--roster", "roster.toml", "--effective-round", "10", *ADD_6, "--out", "v2.toml")
    out = ok(capsys, "sign", "v2.toml", "--key", "enc.key", "--passphrase-env", "P2PFL_TEST_PASS")
    assert out.startswith("signed v2.toml (roster version 2, digest ") and " as hospital-1\n" in out


def test_merge_refuses_a_copy_of_another_proposal_or_a_bad_signature(site, capsys):
    ok(capsys, "propose", "--roster", "roster.toml", "--effective-round", "10", *ADD_6, "--out", "a.toml",
       "--key", "k1.key")
    ok(capsys, "propose", "--roster", "roster.toml", "--effective-round", "11", *ADD_6, "--out", "b.toml",
       "--key", "k2.key")
    err = refused(capsys, "merge", "a.toml", "b.toml", "--out", "m.toml")
    assert "b.toml differs from a.toml (effective_round 11, not 10)" in err
    text = (site / "a.toml").read_text()
    value = text.split('value = "')[1][:128]
    (site / "c.toml").write_text(text.replace(value, value[::-1]))
    err = refused(capsys, "merge", "a.toml", "c.toml", "--out", "m.toml")
    assert "c.toml: the signature of hospital-1 does not verify over roster version 2" in err
    assert not (site / "m.toml").exists()
    err = refused(capsys, "merge", "a.toml", "--out", "b.toml")
    assert "b.toml exists; not overwriting it" in err


def test_verify_config_reads_the_roster_then_the_stored_versions(site, capsys, write_config):
    adopted(capsys, "roster.toml", "v2.toml", ADD_6, 10, 1, 2, 3)
    adopted(capsys, "v2.toml", "v3.toml", ["--remove", "hospital-1"], 15, 2, 3, 4, 6)
    config = write_config()
    stored = site / "state" / ROSTERS_DIR
    assert stored_versions(site / "state") == []  # no folder yet
    stored.mkdir(parents=True)
    shutil.move("v3.toml", stored / "v3.toml")
    shutil.move("v2.toml", stored / "v2.toml")
    (stored / "notes.txt").write_text("not a version")
    assert stored_versions(site / "state") == [stored / "v2.toml", stored / "v3.toml"]
    chain = ok(capsys, "verify", "--config", str(config)).splitlines()
    assert [line.split(": version")[0] for line in chain[:3]] == [
        str(site / "roster.toml"), str(stored / "v2.toml"), str(stored / "v3.toml")]
    assert chain[3].startswith("chain ok")

    shutil.copy(stored / "v2.toml", "roster.toml")  # the operator installed v2 over roster.toml
    assert len(ok(capsys, "verify", "--config", str(config)).splitlines()) == 3  # v2 (given), v3
    shutil.copy(stored / "v2.toml", stored / "v4.toml")
    err = refused(capsys, "verify", "--config", str(config))
    assert f"{stored / 'v4.toml'} holds roster version 2, not the one its name says" in err


def test_stored_versions_are_sorted_by_number(tmp_path):
    folder = tmp_path / ROSTERS_DIR
    folder.mkdir()
    for name in ("v10.toml", "v2.toml", "v9.toml", "v0.toml", "v02.toml", "vx.toml",
                 ".v3.toml.0123456789ab.tmp"):
        (folder / name).write_text("")
    assert [p.name for p in stored_versions(tmp_path)] == ["v2.toml", "v9.toml", "v10.toml"]


def _v3_skipping_v2(capsys):
    adopted(capsys, "roster.toml", "v2.toml", ADD_6, 10, 1, 2, 3)
    ok(capsys, "propose", "--roster", "v2.toml", "--effective-round", "20", "--remove", "hospital-6",
       "--out", "v3.toml", "--key", "k1.key")


BAD = [  # (set-up, argv, the error line holds)
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "10", "--remove", "hospital-9",
            "--out", "x.toml"], "--remove: no member 'hospital-9' (members: hospital-1, "),
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "10", "--rotate", "hospital-9",
            IDS[NEW], "--out", "x.toml"], "--rotate: no member 'hospital-9'"),
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "10", "--address", "hospital-9",
            addr(7), "--out", "x.toml"], "--address: no member 'hospital-9'"),
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "10", "--add", "hospital-6",
            "12D3KooWnot-a-peer-id", addr(5), "--out", "x.toml"], "--add: the proposal: member 'hospital-6': "
     "bad peer_id"),
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "10", "--rotate", "hospital-2",
            "QmNotEd25519", "--out", "x.toml"], "--rotate: the proposal: member 'hospital-2': bad peer_id"),
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "10", "--add", "hospital-6", IDS[NEW],
            "--out", "x.toml"], "--add takes NAME PEER_ID ADDR..., got hospital-6"),
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "10", "--add", "hospital-1", IDS[NEW],
            addr(5), "--out", "x.toml"], "--add: 'hospital-1' is already a member"),
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "0", *ADD_6, "--out", "x.toml"],
     "--effective-round 0 must be after round 0, when version 1 (roster.toml) took effect"),
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "10", *ADD_6, "--threshold", "7",
            "--out", "x.toml"], "--threshold must be 0 (a majority) to 6"),
    (None, ["propose", "--roster", "roster.toml", "--effective-round", "10", *ADD_6, "--out", "x.toml",
            "--key", "k8.key"], f"key file k8.key ({IDS[OUTSIDER]}) is not a member of roster version 1"),
    (None, ["propose", "--roster", "missing.toml", "--effective-round", "10", *ADD_6, "--out", "x.toml"],
     "roster file missing.toml does not exist"),
    ("v2", ["sign", "v2.toml", "--key", "k8.key", "--previous", "roster.toml"],
     f"key file k8.key ({IDS[OUTSIDER]}) is not a member of roster version 1 (roster.toml)"),
    ("v2", ["sign", "roster.toml", "--key", "k1.key"], "roster.toml is version 1"),
    ("v2", ["sign", "v2.toml", "--key", "k9.key"], "key file k9.key does not exist"),
    ("outsider", ["verify", "roster.toml", "v2.toml"],
     f"v2.toml: version 2 is signed by {IDS[OUTSIDER]}, not a member of version 1"),
    ("skip", ["verify", "roster.toml", "v3.toml"],
     "v3.toml: version 3 does not follow version 1 (expected 2)"),
    ("skip", ["sign", "v3.toml", "--key", "k2.key", "--previous", "roster.toml"],
     "v3.toml: version 3 does not follow version 1 (expected 2)"),
    ("skip", ["verify", "v2.toml", "roster.toml"], "roster.toml: version 1 does not follow version 2"),
    (None, ["verify"], "roster verify takes the roster files FILE... or --config node.toml"),
]


@pytest.mark.parametrize("setup, argv, message", BAD)
def test_bad_input_is_one_line_exit_2(site, capsys, setup, argv, message):
    if setup in ("v2", "outsider"):
        ok(capsys, "propose", "--roster", "roster.toml", "--effective-round", "10", *ADD_6, "--out",
           "v2.toml")
    if setup == "outsider":
        for i in (1, 2, 3, 8):
            ok(capsys, "sign", "v2.toml", "--key", f"k{i}.key")
    if setup == "skip":
        _v3_skipping_v2(capsys)
    before = sorted(p.name for p in site.iterdir())
    assert message in refused(capsys, *argv)
    assert sorted(p.name for p in site.iterdir()) == before  # nothing written
