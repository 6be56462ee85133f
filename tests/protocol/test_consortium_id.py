"""Consortium IDs: deterministic, sensitive to every setting, and checked on every update."""

import dataclasses
import hashlib
import math

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pfl.protocol.codec import decode, encode
from p2pfl.protocol.consortium import (
    Consortium,
    canonical_json,
    check_consortium,
    consortium_of,
)
from p2pfl.protocol.messages import InvalidMessage, ProtocolViolation

pytestmark = pytest.mark.filterwarnings("ignore:The given buffer is not writable")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SECTIONS = {
    "roster": [{"name": "a", "peer_id": "12D3KooWA"}, {"name": "b", "peer_id": "12D3KooWB"}],
    "training": {"lr": 0.1, "batch_size": 32, "optimizer": "sgd", "momentum": None},
    "gossip": {"topology": "ring", "aggregator": "mean", "seed": 0, "static": True},
}


def changed(section: str, key: str, value: object) -> dict[str, object]:
    out = {name: dict(v) if isinstance(v, dict) else list(v) for name, v in SECTIONS.items()}
    out[section][key] = value  # type: ignore[index]
    return out


def update_of(consortium: Consortium):
    blob = encode(KEY, consortium=consortium, round=1, fingerprint="ab" * 32, num_samples=1,
                  weight=1.0, tensors={"w": torch.ones(2)})
    return decode(bytes(blob))


def test_canonical_form_is_the_documented_one():
    value = {"b": [1, 2.5, -0.0, 1e-05, True, None], "a": {"z": "é", "y": math.inf}}
    assert canonical_json(value) == '{"a":{"y":Infinity,"z":"\\u00e9"},"b":[1,2.5,-0.0,1e-05,true,null]}'
    assert canonical_json((1, "x")) == canonical_json([1, "x"]) == '[1,"x"]'


def test_id_is_the_documented_digest():
    c = consortium_of({"training": {"lr": 0.1}, "gossip": {"k": 2}})
    digests = {
        "gossip": hashlib.sha256(b'{"k":2}').digest(),
        "training": hashlib.sha256(b'{"lr":0.1}').digest(),
    }
    assert c.sections == digests
    expected = hashlib.sha256(
        b"p2pfl consortium v1\0" + b"gossip\0" + digests["gossip"] + b"training\0" + digests["training"]
    )
    assert c.id == expected.digest() and len(c.id) == 32


def test_id_is_deterministic_whatever_the_order():
    reordered = {name: SECTIONS[name] for name in reversed(list(SECTIONS))}
    reordered["training"] = dict(reversed(list(SECTIONS["training"].items())))
    assert consortium_of(reordered) == consortium_of(SECTIONS)
    assert consortium_of(SECTIONS).id == consortium_of(SECTIONS).id


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("training", "lr", math.nextafter(0.1, 1.0)),  # the next float after 0.1
        ("training", "lr", 0.1000001),
        ("training", "batch_size", 32.0),  # 32 and 32.0 differ
        ("training", "momentum", 0.0),
        ("gossip", "static", 1),  # True and 1 differ
        ("gossip", "topology", "Ring"),
        ("gossip", "extra", None),
    ],
)
def test_id_changes_when_any_value_changes(section, key, value):
    base = consortium_of(SECTIONS)
    other = consortium_of(changed(section, key, value))
    assert other.id != base.id
    assert other.sections[section] != base.sections[section]
    assert {n for n in SECTIONS if other.sections[n] != base.sections[n]} == {section}


def test_id_changes_with_the_roster_and_the_section_names():
    base = consortium_of(SECTIONS)
    roster = list(SECTIONS["roster"]) + [{"name": "c", "peer_id": "12D3KooWC"}]
    assert consortium_of({**SECTIONS, "roster": roster}).id != base.id
    renamed = {("model" if n == "gossip" else n): v for n, v in SECTIONS.items()}
    assert consortium_of(renamed).id != base.id
    assert consortium_of({**SECTIONS, "privacy": {}}).id != base.id


def test_a_captured_update_of_another_consortium_is_refused():
    # the same member, in two consortia with different settings
    a = consortium_of(SECTIONS)
    b = consortium_of(changed("gossip", "seed", 7))
    captured = update_of(a)
    check_consortium(captured, a)
    with pytest.raises(ProtocolViolation) as err:  # signed by a member: it is to blame
        check_consortium(captured, b)
    text = str(err.value)
    assert text.startswith(f"consortium {a.id.hex()[:8]} differs from this node's {b.id.hex()[:8]}: ")
    assert "different settings in gossip (" in text and "training" not in text
    assert text.endswith("(the members' rosters or settings are not the same)")


def test_mismatch_names_every_differing_section_and_those_on_one_side_only():
    mine = consortium_of({**changed("training", "lr", 0.2), "privacy": {"noise": 1.0}})
    theirs = consortium_of({**changed("gossip", "seed", 1), "data": {"classes": ["0", "1"]}})
    theirs_update = update_of(theirs)
    with pytest.raises(InvalidMessage) as err:
        check_consortium(theirs_update, mine)
    text = str(err.value)
    assert "different settings in gossip, training;" in text
    assert "sections only the sender has: data;" in text
    assert "sections only this node has: privacy " in text


def test_consortium_of_refuses_what_has_no_canonical_form():
    with pytest.raises(ValueError, match="section 'training'.lr is a set"):
        consortium_of({"training": {"lr": {0.1}}})
    with pytest.raises(ValueError, match=r"section 'gossip'\[1\] is a bytes"):
        consortium_of({"gossip": ["a", b"b"]})
    with pytest.raises(ValueError, match="has the key 1: section keys must be strings"):
        consortium_of({"gossip": {1: "a"}})
    with pytest.raises(ValueError, match="section name 'Gossip' is not 1 to 32 characters"):
        consortium_of({"Gossip": {}})
    with pytest.raises(ValueError, match="sections has 17 entries \\(at most 16\\)"):
        consortium_of({f"s{'_' * i}": {} for i in range(17)})


def test_a_consortium_must_be_what_its_sections_give():
    c = consortium_of(SECTIONS)
    with pytest.raises(ValueError, match="its id is not the digest of its sections"):
        Consortium(bytes(32), c.sections)
    with pytest.raises(ValueError, match="section 'gossip' digest .* is not 32 bytes"):
        Consortium(c.id, {**c.sections, "gossip": b"short"})
    with pytest.raises(ValueError, match="not a Consortium"):
        encode(KEY, consortium=c.id, round=1, fingerprint="ab" * 32, num_samples=1, weight=1.0,
               tensors={})


def test_an_id_that_contradicts_matching_sections_is_refused_too():
    mine = consortium_of(SECTIONS)
    forged = dataclasses.replace(update_of(mine), consortium=bytes(32))
    with pytest.raises(InvalidMessage, match="consortium 00000000 differs .*: every section digest"):
        check_consortium(forged, mine)


def test_a_consortium_keeps_its_own_copy_of_the_sections():
    sections = dict(consortium_of(SECTIONS).sections)
    c = Consortium(consortium_of(SECTIONS).id, sections)
    sections["extra"] = bytes(32)
    assert "extra" not in c.sections
