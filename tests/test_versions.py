"""Version requests: runtime.txt, .python-version, precedence, and the errors for bad ones."""

from __future__ import annotations

import pytest

from dcbuild import log, versions


def request(tmp_path, **files):
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode() if isinstance(text, str) else text)
    return versions.requested(tmp_path)


@pytest.mark.parametrize(
    ("text", "line", "micro"),
    [
        ("python-3.12.7\n", (3, 12), 7),
        ("python-3.13", (3, 13), None),
        ("\ufeffpython-3.12.1\r\n", (3, 12), 1),  # BOM and CRLF
        ("  python-3.11  \n\n", (3, 11), None),  # spaces and blank lines
        ("\n\t python-3.12.7\t \r\n\r\n  \n", (3, 12), 7),  # leading blank line, tabs, CRLF blank lines
        ("python-3.13\r", (3, 13), None),  # old Mac line end
        ("python-3.12.1\r\n".encode("utf-16"), (3, 12), 1),  # PowerShell's `echo > runtime.txt`: UTF-16, BOM
    ],
)
def test_runtime_txt(tmp_path, text, line, micro):
    req = request(tmp_path, **{"runtime.txt": text})
    assert (req.line, req.micro) == (line, micro)
    assert req.origin.startswith("runtime.txt:")


@pytest.mark.parametrize(
    ("text", "line", "micro"),
    [
        ("3.12\n", (3, 12), None),
        ("# pinned for prod\n3.13.0 # comment\n", (3, 13), 0),
        ("3.12.1\n3.11\n", (3, 12), 1),  # pyenv fallbacks: the first one counts
    ],
)
def test_python_version(tmp_path, text, line, micro):
    req = request(tmp_path, **{".python-version": text})
    assert (req.line, req.micro) == (line, micro)


def test_runtime_txt_wins_over_python_version(tmp_path):
    req = request(tmp_path, **{"runtime.txt": "python-3.11", ".python-version": "3.13"})
    assert req.line == (3, 11)
    assert req.origin == "runtime.txt:1"


def test_empty_files_fall_through(tmp_path, capsys):
    req = request(tmp_path, **{"runtime.txt": "\n", ".python-version": "3.13\n"})
    assert req.line == (3, 13)
    err = capsys.readouterr().err
    assert " !     Warning: runtime.txt holds only comments and blank lines; ignoring it" in err
    assert "Write a version in it (such as 'python-3.14') or delete it." in err


@pytest.mark.parametrize(
    ("name", "text"),
    [(name, text) for name in ("runtime.txt", ".python-version") for text in ("", "\ufeff", " \t\r\n\r\n")]
    + [(".python-version", "# just a comment\n")],  # runtime.txt has no comments: that one is malformed
)
def test_empty_file_is_absent_with_a_warning(tmp_path, capsys, name, text):
    req = request(tmp_path, **{name: text})
    assert req.origin == "default"
    err = capsys.readouterr().err
    assert f" !     Warning: {name} holds " in err and "ignoring it" in err


def test_several_python_version_lines_use_the_first_with_a_warning(tmp_path, capsys):
    req = request(tmp_path, **{".python-version": "# pyenv\n3.12.1\n3.11  # fallback\nsystem\n"})
    assert (req.line, req.micro, req.origin) == ((3, 12), 1, ".python-version:2")
    err = capsys.readouterr().err
    assert " !     Warning: .python-version:2: using '3.12.1', the first version in .python-version" in err
    assert "'3.11' (line 3), 'system' (line 4)" in err


def test_one_line_gives_no_warning(tmp_path, capsys):
    request(tmp_path, **{".python-version": "3.12\n", "runtime.txt": "python-3.12\r\n"})
    assert capsys.readouterr().err == ""


def test_default_is_a_supported_line(tmp_path):
    req = request(tmp_path)
    assert req.origin == "default"
    assert req.line == versions.DEFAULT_LINE
    assert req.line in versions.SUPPORTED_LINES


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("runtime.txt", "pyhton-3.12\n", "runtime.txt:1: 'pyhton-3.12' is not a Python version"),
        ("runtime.txt", "python-3.10.13\n", "runtime.txt:1: Python 'python-3.10.13' is not supported"),
        ("runtime.txt", "python-2.7.18\n", "is not supported"),
        ("runtime.txt", "python-3.99\n", "not a released CPython line"),
        ("runtime.txt", "python-3.12\npython-3.13\n", "runtime.txt:2: unexpected second line"),
        (".python-version", "python-3.12\n", "without the 'python-' prefix"),
        (".python-version", "\n\n3.9\n", ".python-version:3: Python '3.9' is not supported"),
        (".python-version", "system\n", "'system' is not a Python version"),
        (".python-version", "3.8\n", ".python-version:1: Python '3.8' is not supported"),
        (".python-version", "3.12.1\n3.8\n", None),  # a bad fallback line is not read: no error
        ("runtime.txt", "python-2.7\n", "runtime.txt:1: Python 'python-2.7' is not supported"),
        ("runtime.txt", "3.8\n", "runtime.txt:1: Python '3.8' is not supported"),  # EOL before the prefix
        ("runtime.txt", "3.12\n", "needs the 'python-' prefix (.python-version is the file without it): 'python-3.12'"),
        ("runtime.txt", "pyhton-3.12\n", "Did you mean 'python-3.12'? Change runtime.txt to that."),
        ("runtime.txt", "python-3.12 # prod\n", "Did you mean 'python-3.12'?"),
        ("runtime.txt", b"\xffpython-3.12\n", "runtime.txt is not UTF-8 text"),
    ],
)
def test_bad_requests_name_file_and_line(tmp_path, name, text, fragment):
    if fragment is None:
        assert request(tmp_path, **{name: text}).line == (3, 12)
        return
    with pytest.raises(log.BuildError) as exc:
        request(tmp_path, **{name: text})
    message = " ".join([exc.value.summary, *exc.value.details])
    assert fragment in message
    if "UTF-8" not in fragment:
        assert "3.11, 3.12, 3.13, 3.14, 3.15" in message


def test_end_of_life_says_so(tmp_path):
    with pytest.raises(log.BuildError) as exc:
        request(tmp_path, **{"runtime.txt": "python-3.10"})
    assert "end of life" in " ".join(exc.value.details)
