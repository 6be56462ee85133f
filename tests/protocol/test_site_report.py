"""The site report: round trip, every way a member's bytes can be wrong, and the best round."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.protocol import site_report
from p2pfl.protocol.identity import peer_id_of
from p2pfl.protocol.messages import BadSignature, InvalidMessage, ProtocolViolation
from p2pfl.protocol.selection import best_round

ALICE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
BOB = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
A, B = peer_id_of(ALICE), peer_id_of(BOB)
MEMBERS, CID = [A, B], bytes(range(32))
REPORT = {"rows": 40, "rounds": 3, "final": {"auroc": 0.91, "sensitivity": 0.8, "ece": None},
          "history": {"auroc": [0.7, None, 0.9], "accuracy": [0.6, 0.7, 0.8]}}


def test_round_trip():
    message = site_report.pack(ALICE, CID, 0, REPORT)
    assert site_report.parse(message, A, CID, MEMBERS) == (0, REPORT)


def test_a_report_is_good_only_from_the_member_it_names_and_for_its_consortium():
    message = site_report.pack(ALICE, CID, 0, REPORT)
    with pytest.raises(InvalidMessage, match="claims member 0, not the sender"):
        site_report.parse(message, B, CID, MEMBERS)  # relayed or claimed by another member
    forged = site_report.pack(BOB, CID, 0, REPORT)  # Bob signs a report in Alice's name
    with pytest.raises(BadSignature):
        site_report.parse(forged, A, CID, MEMBERS)
    with pytest.raises(ProtocolViolation, match="consortium"):
        site_report.parse(message, A, bytes(32), MEMBERS)


@pytest.mark.parametrize("cut", [1, 64, 100])
def test_truncated_or_padded(cut):
    message = site_report.pack(ALICE, CID, 0, REPORT)
    with pytest.raises(InvalidMessage):
        site_report.parse(message[:-cut], A, CID, MEMBERS)
    with pytest.raises(InvalidMessage):
        site_report.parse(message + bytes(cut), A, CID, MEMBERS)


@pytest.mark.parametrize("bad, match", [
    ({**REPORT, "extra": 1}, "exactly"),
    ({**REPORT, "rows": -1}, "rows is not a count"),
    ({**REPORT, "final": {"auroc": "high"}}, "not a finite number"),
    ({**REPORT, "final": {"a b": 1.0}}, "bad metric name"),
    ({**REPORT, "history": {"auroc": [0.5]}}, "one value per round"),
    ({**REPORT, "history": {f"m{i}": [0, 0, 0] for i in range(40)}}, "at most"),
])
def test_bad_content_is_refused_before_it_is_kept(bad, match):
    with pytest.raises(ProtocolViolation, match=match):
        site_report.check(bad)
    with pytest.raises(ProtocolViolation, match=match):
        site_report.pack(ALICE, CID, 0, bad)  # and never sent


def test_best_round_is_the_median_over_members_so_one_member_cannot_pick_it():
    honest = {"a": [0.6, 0.8, 0.7], "b": [0.6, 0.8, 0.7], "c": [0.6, 0.8, 0.7]}
    assert best_round(honest).round == 1
    liar = {**honest, "d": [1.0, 0.0, 1.0]}  # extreme values for the rounds it wants
    assert best_round(liar).round == 1  # the mean would have picked round 0 or 2
    assert best_round({"a": [None, 0.5, 0.5]}).round == 2  # a tie goes to the later round
    assert best_round({"a": [None, None]}) is None
