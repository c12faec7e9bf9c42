"""dotcloud.yml environment: as a .profile.d script: quoted, never evaluated, config vars win."""

from __future__ import annotations

import subprocess

from dcbuild import envfile


def test_values_are_never_evaluated_and_config_vars_win(tmp_path):
    script = tmp_path / "env.sh"
    script.write_text(envfile.render({
        "GREETING": "it's $(touch pwned) `x` $HOME;",
        "FROM_PLATFORM": "yml value",
        "EMPTY": "",
        "bad-name": "x",
        "PATH": "/evil",
    }))
    res = subprocess.run(
        ["bash", "-c", f'set -eo pipefail; . {script}; '
                       'printf "%s|%s|%s|%s" "$GREETING" "$FROM_PLATFORM" "${EMPTY+set}" "$PATH"'],
        cwd=tmp_path, env={"FROM_PLATFORM": "platform value", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == "it's $(touch pwned) `x` $HOME;|platform value|set|/usr/bin:/bin"
    assert not (tmp_path / "pwned").exists()
