"""Requirement files: nesting, loops, and the content key of the userreqs layer."""

from __future__ import annotations

import pytest

from dcbuild import log, reqs


def write(root, **files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "requirements.txt"


def test_collects_nested_files_once(tmp_path):
    top = write(tmp_path, **{
        "requirements.txt": "-r req/base.txt\n--requirement=req/extra.txt\n-c req/pins.txt\nflask\n",
        "req/base.txt": "-r extra.txt\nsix\n",
        "req/extra.txt": "-rpins.txt  # joined form\n",
        "req/pins.txt": "six==1.16.0\n",
    })
    names = [p.relative_to(tmp_path).as_posix() for p in reqs.collect(top)]
    assert names == ["requirements.txt", "req/base.txt", "req/extra.txt", "req/pins.txt"]


def test_digest_changes_with_a_nested_file_only(tmp_path):
    top = write(tmp_path, **{"requirements.txt": "-r base.txt\n", "base.txt": "six==1.16.0\n"})
    before = reqs.digest(top, tmp_path)
    assert reqs.digest(top, tmp_path) == before
    (tmp_path / "base.txt").write_text("six==1.17.0\n")
    assert reqs.digest(top, tmp_path) != before


def test_loop_is_a_clear_error(tmp_path):
    top = write(tmp_path, **{"requirements.txt": "-r a.txt\n", "a.txt": "six\n-r requirements.txt\n"})
    with pytest.raises(log.BuildError) as exc:
        reqs.collect(top)
    assert exc.value.summary == "a.txt:2: requirement files include each other in a loop"
    assert "requirements.txt -> a.txt -> requirements.txt" in exc.value.details


def test_missing_nested_file_names_the_line(tmp_path):
    top = write(tmp_path, **{"requirements.txt": "six\n-r nope.txt\n"})
    with pytest.raises(log.BuildError) as exc:
        reqs.collect(top)
    assert exc.value.summary == "requirements.txt:2: requirement file nope.txt does not exist"


def test_urls_and_comments_are_not_files(tmp_path):
    top = write(tmp_path, **{"requirements.txt": "# -r commented.txt\n-r https://example.invalid/r.txt\nsix\n"})
    assert reqs.collect(top) == [top.resolve()]
