"""Import paths ``package.module:attribute``: dotted attributes, and the current folder searched last."""

from __future__ import annotations

import os
import os.path
import sys

from constrained_eq._utils.import_path import load_object


def test_a_dotted_attribute_is_followed_part_by_part():
    assert load_object("os:path.join", "function") is os.path.join
    assert load_object("os.path:join", "function") is os.path.join


def test_the_current_folder_is_searched_after_the_installed_packages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = list(sys.path)
    (tmp_path / "ceq_import_path_probe.py").write_text("VALUE = 42\n")
    monkeypatch.delitem(sys.modules, "ceq_import_path_probe", raising=False)
    assert load_object("ceq_import_path_probe:VALUE", "value") == 42
    assert sys.path == [*before, str(tmp_path)]  # appended: a module of the folder never shadows an installed one
    monkeypatch.delitem(sys.modules, "ceq_import_path_probe", raising=False)
