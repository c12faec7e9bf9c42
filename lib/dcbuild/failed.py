"""The end of a failed build: one error paragraph, in the Heroku vocabulary, never make's own words.

    python3 -S -m dcbuild.failed LOG [dcbuild.diskfull's options]

bin/compile runs this when make failed, on the build's output (LOG), after hiding make's own
lines (``make: *** [target] Error 1``, ``Deleting file``, ``Build stopped``, see ``MAKE_NOISE``).
The step that failed has normally printed its `` !     Error:`` paragraph already; then this
prints nothing, unless the disk was full (dcbuild.diskfull's paragraph, which names where). A
step that failed without one (a crashed tool, a bug of ours) gets a paragraph here that names
the step and says where its cause is, so that a failure is never silent.
"""

from __future__ import annotations

import re
import sys

from . import diskfull

# make's own lines, which bin/compile does not show (its grep has the same pattern).
MAKE_NOISE = re.compile(r"^make(\[\d+\])?: (\*\*\* (\[.*\] Error \d+|Deleting file .*)|Deleting file .*)$"
                        r"|^\S*(Makefile|\.mk):\d+: \*\*\* Build stopped\.  Stop\.$")
FAILED_TARGET = re.compile(r"^make(?:\[\d+\])?: \*\*\* \[(?:[^\]:]*:\d+: )?([^\]]+)\] Error (\d+)$", re.M)
OTHER_MAKE_ERROR = re.compile(r"^make(?:\[\d+\])?: \*\*\* (?!\[)(.+)$", re.M)
# What each step's target is called (by the start of its file name) in the paragraph.
STEPS = {
    "runtime-": "installing Python", "dcreqs-": "installing the dotCloud requirements",
    "userreqs-": "installing the app's requirements", "report-": "making the migration report",
    "dcruntime-": "compiling the buildpack's run-time package", "nginx": "installing nginx",
}


def paragraph(output: str) -> list[str]:
    """The lines (without ` !     `) to print after a failed build, or [] when it said why itself."""
    if re.search(r"^ !     Error:", output, re.M):
        return []
    failed = FAILED_TARGET.findall(output)
    if failed:
        target, status = failed[-1]
        name = target.rstrip("/").rsplit("/", 1)[-1]
        step = next((what for prefix, what in STEPS.items() if name.startswith(prefix)), f"making {name}")
        summary = f"Error: the build failed while {step} (exit status {status})."
    else:
        other = OTHER_MAKE_ERROR.findall(output)
        summary = f"Error: the build stopped: {other[-1].strip().rstrip('.')}." if other else "Error: the build failed."
    return [summary,
            "The step printed no error of its own: the lines just above are its output, and the cause.",
            "If they do not name something in the app to fix, it is a bug of the buildpack: report it with this log."]


def _main(argv: list[str]) -> int:
    if not argv:
        return 0
    try:
        with open(argv[0], encoding="utf-8", errors="replace") as f:
            output = f.read()
    except OSError:
        output = ""
    diskfull._main(argv)
    lines = [] if diskfull.FULL.search(output) else paragraph(output)
    sys.stderr.write("".join(f" !     {line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
