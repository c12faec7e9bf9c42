"""dcbuild.diskfull: the paragraph bin/compile prints when a build ran out of disk space (the
builds that really fill a tmpfs are in test_bad_input.py)."""

from __future__ import annotations

from dcbuild import diskfull


def test_nothing_when_the_disk_was_not_full(tmp_path):
    assert diskfull.report("ERROR: No matching distribution found for nope\n", [("BUILD_DIR", str(tmp_path))],
                           [], "256") == []


def test_names_the_file_by_its_real_path_and_the_free_space(tmp_path):
    real = tmp_path / "my app é"
    real.mkdir()
    output = ("Errno 28 somewhere\n"
              "cp: error writing '/tmp/dcbp-paths.x/app/.dotcloud/python/lib/libpython.so': No space left on device\n")
    lines = diskfull.report(output, [("BUILD_DIR", str(real)), ("TMPDIR", str(tmp_path))],
                            [("/tmp/dcbp-paths.x/app", str(real))], "64")
    target = f"{real}/.dotcloud/python/lib/libpython.so"
    assert lines[0] == f"Error: the disk is full: the build ran out of space writing {target}."
    assert lines[2].startswith(f"  BUILD_DIR {real}: ") and "MB free on the filesystem mounted at /" in lines[2]
    assert "DC_CACHE_MIN_FREE_MB (now 64)" in lines[-1]


def test_without_a_path_names_the_directory_with_the_least_space(tmp_path):
    lines = diskfull.report("OSError: [Errno 28] No space left on device\n",
                            [("CACHE_DIR", str(tmp_path)), ("TMPDIR", "/nonexistent/x")], [], "256")
    assert lines[0] == f"Error: the disk is full: the build ran out of space in CACHE_DIR ({tmp_path})."
    assert lines[3] == "  TMPDIR /nonexistent/x: ? MB free on the filesystem mounted at ?"
