"""The shape of the code (issue 14): modules under 500 lines, functions under 80, no block of six
or more lines repeated, ruff clean. These read the source; they do not import it."""

from __future__ import annotations

import ast
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "stainfree"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
BLOCK = 6

#: Functions still over the limit, to be split; the list may only shrink (it is empty: keep it so).
LONG_FUNCTIONS: set[str] = set()


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def function_lengths(path: Path) -> dict[str, int]:
    """Lines of each function, its docstring left out (numpydoc docstrings with examples are long
    by design; the limit is on code)."""
    tree = ast.parse(path.read_text())
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                n -= first.end_lineno - first.lineno + 1
            out[f"{path.relative_to(PACKAGE).with_suffix('').as_posix().replace('/', '.')}.{node.name}"] = n
    return out


def repeated_blocks(paths: list[Path], size: int = BLOCK) -> list[tuple[str, str]]:
    """Pairs of places where the same ``size`` meaningful lines (stripped; blank lines, comments,
    imports, decorators and lines of a bracket or quote alone left out) occur twice."""
    seen: dict[str, str] = {}
    clashes = []
    for path in paths:
        lines = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line.strip()
            if not text or text.startswith(("#", "import ", "from ", "@")) or len(text.strip("()[]{}\"',:")) == 0:
                continue
            lines.append((number, text))
        for i in range(len(lines) - size + 1):
            window = lines[i : i + size]
            digest = hashlib.sha1("\n".join(t for _, t in window).encode()).hexdigest()
            where = f"{path.relative_to(ROOT)}:{window[0][0]}"
            if digest in seen and not seen[digest].startswith(f"{path.relative_to(ROOT)}:"):
                clashes.append((seen[digest], where))
            seen.setdefault(digest, where)
    return clashes


def test_modules_are_short():
    long = {str(p.relative_to(ROOT)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_functions_are_short():
    lengths = {name: n for p in modules() for name, n in function_lengths(p).items()}
    long = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
    fixed = sorted(name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES)
    assert not fixed, f"now short (or gone): take them off LONG_FUNCTIONS: {fixed}"


def test_no_repeated_blocks():
    clashes = repeated_blocks(modules())
    assert not clashes, f"blocks of {BLOCK} lines repeated: {clashes[:10]}"


def test_repeated_blocks_are_found(tmp_path):
    body = "\n".join(f"x{i} = f({i})" for i in range(7))
    (tmp_path / "a.py").write_text(body)
    (tmp_path / "b.py").write_text("y = 1\n" + body)
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert repeated_blocks([tmp_path / "a.py", tmp_path / "b.py"]) == [("a.py:1", "b.py:2"), ("a.py:2", "b.py:3")]
    finally:
        ROOT = saved


def test_ruff_passes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    checked = subprocess.run([ruff, "check", "--quiet", "src", "tests", "benchmarks", "scripts"], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = subprocess.run(
        [ruff, "format", "--check", "--quiet", "src", "tests", "benchmarks", "scripts"], cwd=ROOT, capture_output=True, text=True
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
