"""Compile an app's Python files with the *target* interpreter (the slug's Python), as a script.

    <runtime>/bin/python3 -I -S -B lib/dcbuild/py2scan.py APP < list-of-relative-paths

Run by dcbuild.migrate with the runtime layer's python3, not the build image's: what matters
is what the Python the app will run on accepts. Standard library only, and nothing from
dcbuild (``-I`` keeps the buildpack off ``sys.path``). Prints one JSON object:

    {"files": {PATH: {"errors": [[LINE, KIND, MESSAGE, TEXT], ...],
                      "compiles_oddly": [[LINE, WHAT, TEXT], ...],
                      "imports": [[MODULE, LINE], ...]}}}

``errors`` are what ``compile()`` refuses, every one of them: after an error its line (and the
lines a bracket or backslash continues it onto) is replaced by ``pass`` at the same indentation
and the file compiled again, up to MAX_ERRORS per file. ``compiles_oddly``: Python 2 statements
that still compile but mean something else (``print >>f, x``, a bare ``print``, and on 3.14
``except X, e:``, PEP 758). ``imports``: top-level imports (absolute, with the level-0 name),
read from the patched source, so a Python 2 file's imports are found too.
"""

import ast
import json
import sys

MAX_ERRORS = 50


def _continued(lines, start):
    """The lines after ``start`` (0-based) that an open bracket or a backslash carries on to."""
    depth, end, quote = 0, start, None
    while end < len(lines):
        text = lines[end]
        i = 0
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif text.startswith(quote, i):
                    i += len(quote) - 1
                    quote = None
            elif ch in "\"'":
                quote = ch * 3 if text.startswith(ch * 3, i) else ch
                i += len(quote) - 1
            elif ch == "#":
                break
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            i += 1
        if quote and len(quote) == 1:
            quote = None  # an unterminated one-line string: not a continuation
        if depth <= 0 and quote is None and not text.rstrip().endswith("\\"):
            return end
        end += 1
    return len(lines) - 1


def _stand_in(statement):
    """A valid statement of the same shape: a block's header stays a header of the same kind."""
    code = statement.split("#", 1)[0].rstrip()
    if not code.endswith(":"):
        return "pass"
    word = code.split(None, 1)[0].rstrip(":") if code.split() else ""
    return {"except": "except Exception:", "elif": "elif 1:", "else": "else:", "try": "try:",
            "finally": "finally:", "def": "def _():", "class": "class _:"}.get(word, "if 1:")


def _blank(lines, index):
    """``pass`` in place of the statement starting at line ``index`` (same indentation)."""
    last = min(_continued(lines, index), index + 50)
    first = lines[index]
    indent = first[: len(first) - len(first.lstrip())]
    lines[index] = indent + _stand_in(" ".join(line.strip() for line in lines[index:last + 1]))
    for i in range(index + 1, last + 1):
        lines[i] = ""


def _print_chevron(node):
    """``print >>f`` (the start of Python 2's ``print >>f, x``): a shift of the name print."""
    return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift) and isinstance(node.left, ast.Name)
            and node.left.id == "print")


def _oddities(tree, source_lines):
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr):
            value = node.value
            if isinstance(value, ast.Name) and value.id == "print":
                found.append([node.lineno, "bare print", "print"])
            elif _print_chevron(value.elts[0] if isinstance(value, ast.Tuple) and value.elts else value):
                found.append([node.lineno, "print >>", "print >>"])
        elif isinstance(node, ast.ExceptHandler) and isinstance(node.type, ast.Tuple) and node.name is None:
            line = source_lines[node.type.lineno - 1] if node.type.lineno <= len(source_lines) else ""
            if line[node.type.col_offset:node.type.col_offset + 1] != "(":
                found.append([node.lineno, "except X, e", line.strip()])
    return found


def _imports(tree):
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [[alias.name, node.lineno] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append([node.module, node.lineno])
            out += [[node.module + "." + alias.name, node.lineno] for alias in node.names if alias.name != "*"]
    return out


def scan(path):
    with open(path, "rb") as f:
        data = f.read()
    errors = []
    try:
        source = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            compile(data, path, "exec", dont_inherit=True)
        except SyntaxError as exc:  # no coding declaration, or a wrong one: say so, go no further
            return {"errors": [[exc.lineno or 1, "SyntaxError", exc.msg, ""]], "compiles_oddly": [], "imports": []}
        except ValueError:
            return {"errors": [], "compiles_oddly": [], "imports": []}
        source = data.decode("latin-1")
    lines = source.splitlines()
    seen = set()
    tree = None
    while len(errors) < MAX_ERRORS:
        text = "\n".join(lines) + "\n"
        try:
            tree = compile(text, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
            compile(tree, path, "exec", dont_inherit=True)
            break
        except TabError as exc:
            number = exc.lineno or 1
            errors.append([number, "TabError", exc.msg, lines[number - 1].strip() if number <= len(lines) else ""])
            lines = [line.expandtabs(8) for line in lines]  # Python 2's rule: tabs to multiples of 8
            tree = None
        except SyntaxError as exc:
            number = exc.lineno or 1
            tree = None
            if number > len(lines) or number in seen:
                if number <= len(lines) or not errors:
                    errors.append([number, "SyntaxError", exc.msg, ""])
                break
            seen.add(number)
            errors.append([number, "SyntaxError", exc.msg, lines[number - 1].strip()])
            _blank(lines, number - 1)
        except (ValueError, RecursionError, MemoryError):
            break
    if tree is None:
        return {"errors": errors, "compiles_oddly": [], "imports": []}
    return {"errors": errors, "compiles_oddly": _oddities(tree, source.splitlines()), "imports": _imports(tree)}


def main():
    root = sys.argv[1]
    out = {}
    for rel in sys.stdin.read().splitlines():
        if rel:
            try:
                out[rel] = scan(root + "/" + rel)
            except OSError:
                continue
    json.dump({"version": list(sys.version_info[:3]), "files": out}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
