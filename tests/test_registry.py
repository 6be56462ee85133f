"""The one registry mechanism: a package's modules are its members, found without a list."""

import sys

import pytest

from p2pfl.registry import Registry


class Unknown(Exception):
    pass


def _package(tmp_path, monkeypatch, files: dict[str, str], name: str = "plugins_under_test") -> str:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for module, text in files.items():
        (pkg / f"{module}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, loaded)
    return name


MEMBER = "from types import SimpleNamespace\nCOMPONENT = SimpleNamespace(name={!r}, summary='s')\n"


def test_every_module_is_a_member_and_underscored_ones_are_helpers(tmp_path, monkeypatch):
    pkg = _package(tmp_path, monkeypatch, {"b": MEMBER.format("beta"), "a": MEMBER.format("alpha"),
                                           "_shared": "X = 1\n"})
    reg = Registry("widget", pkg, Unknown)
    assert reg.names() == ("alpha", "beta") and reg.choices() == "alpha, beta"
    assert reg.get("beta").summary == "s" and "alpha" in reg and "_shared" not in reg
    with pytest.raises(Unknown, match="unknown widget 'gamma'; choose one of alpha, beta"):
        reg.get("gamma")


def test_a_module_without_a_component_or_a_name_taken_twice_is_a_programming_error(tmp_path, monkeypatch):
    pkg = _package(tmp_path, monkeypatch, {"a": MEMBER.format("alpha"), "b": MEMBER.format("alpha")})
    with pytest.raises(TypeError, match="two widgets are called 'alpha'"):
        Registry("widget", pkg, Unknown).names()
    other = _package(tmp_path, monkeypatch, {"a": MEMBER.format("alpha"), "b": "Y = 2\n"}, "plugins_bare")
    with pytest.raises(TypeError, match="defines no COMPONENT"):
        Registry("widget", other, Unknown).names()
