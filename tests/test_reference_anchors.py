"""Reference tests find the official code and pickles through one constant, and never skip silently under CI."""

from __future__ import annotations

import pytest
from _pytest.outcomes import Failed, Skipped
from conftest import ANCHORS, OFFICIAL_PKLS, OFFICIAL_SG2, SHARED, require_shared


def test_one_place_names_the_anchors():
    assert OFFICIAL_SG2.parent == ANCHORS == OFFICIAL_PKLS.parent and ANCHORS.parent == SHARED


def test_missing_reference_skips_for_a_user_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match="not found: needed here"):
        require_shared("anchors/no-such-folder", "x.py", "needed here")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(Failed, match="CI is set"):
        require_shared(OFFICIAL_SG2 / "no-such-folder", "x.py", "needed here")


def test_present_reference_is_returned(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "1")
    (tmp_path / "marker.txt").write_text("")
    assert require_shared(tmp_path, "marker.txt", "absolute paths are taken as they are") == tmp_path
