"""The tree's layout, checked statically (with ast, importing nothing).

`remitnet` is one namespace package whose parts live in three roots
(protos/remitnet/<area>, services/remitnet/services, clients/remitnet/clients):
no folder holds remitnet/__init__.py, every `remitnet.*` import names a
module or package under one of the roots, and nothing puts a folder on the
import path at run time (pyproject's mypy_path, pyright extraPaths and
pytest pythonpath name the roots instead). Within the services, the domain
and the service layer keep to their side of the architecture.

Each check is a function over a tree; the last tests feed them a small tree
that breaks every rule, so none of them can pass by finding nothing."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOTS = ("protos", "services", "clients")  # the parts of the `remitnet` namespace
CHECKED = ("services", "clients", "scripts", "tests")  # no import-path edits here
SKIPPED = {".git", ".venv", "build", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
SERVICES = Path("services/remitnet/services")


@dataclass(frozen=True)
class Import:
    path: Path  # relative to the tree
    line: int
    module: str  # absolute, relative imports resolved
    names: tuple[str, ...] = ()  # of `from module import names`

    def targets(self) -> Iterator[str]:
        """The module, and what each imported name would be as a submodule."""
        yield self.module
        for name in self.names:
            yield f"{self.module}.{name}"

    def __str__(self) -> str:
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.path}:{self.line}: {self.module}{names}"


def files(tree: Path, folders: Iterable[str], suffixes: tuple[str, ...] = (".py",)) -> list[Path]:
    out: list[Path] = []
    for folder in folders:
        for top, dirs, names in os.walk(tree / folder):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED and not d.endswith(".egg-info"))
            out += [Path(top) / n for n in sorted(names) if n.endswith(suffixes)]
    return out


def package_of(tree: Path, path: Path) -> list[str]:
    """The dotted package a file is in, as its imports see it."""
    rel = path.relative_to(tree)
    if rel.parts[0] in (*ROOTS, "scripts"):
        rel = rel.relative_to(rel.parts[0])
    parts = list(rel.with_suffix("").parts)
    return parts[:-1]


def imports(tree: Path, path: Path) -> Iterator[Import]:
    """Every import of a file, including `__import__("…")` and
    `importlib.import_module("…")` with a literal name."""
    rel = path.relative_to(tree)
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(rel, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                package = package_of(tree, path)
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            yield Import(rel, node.lineno, module, tuple(a.name for a in node.names))
        elif (
            isinstance(node, ast.Call)
            and _dotted(node.func) in ("__import__", "importlib.import_module", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(rel, node.lineno, node.args[0].value)


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


# (a) nothing edits sys.path or PYTHONPATH ---------------------------------------

PATH_CALLS = {"sys.path.insert", "sys.path.append", "sys.path.extend", "site.addsitedir"}
ENV_CALLS = {"setenv", "putenv", "setdefault", "pop", "delenv", "update"}
SHELL_EDIT = re.compile(r"\bPYTHONPATH\s*\+?=|\bexport\s+PYTHONPATH\b|\bunset\s+PYTHONPATH\b")


def _is_pythonpath(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value == "PYTHONPATH"


def path_edits(tree: Path, folders: Iterable[str] = CHECKED) -> list[str]:
    """Where a file changes the import path at run time: sys.path edited
    (insert, append, extend, assigned, site.addsitedir, pytest's
    syspath_prepend) or PYTHONPATH set, updated or removed, in Python or in
    a shell script."""
    found: list[str] = []
    for path in files(tree, folders, (".py", ".sh")):
        rel = path.relative_to(tree)
        if path.suffix == ".sh":
            for n, text in enumerate(path.read_text().splitlines(), 1):
                if SHELL_EDIT.search(text.split("#")[0]):
                    found.append(f"{rel}:{n}: {text.strip()}")
            continue
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            what = ""
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name in PATH_CALLS or name.endswith(".syspath_prepend"):
                    what = name
                elif name.rsplit(".", 1)[-1] in ENV_CALLS and node.args:
                    what = "PYTHONPATH" if _is_pythonpath(node.args[0]) else ""
                if any(k.arg == "PYTHONPATH" for k in node.keywords):
                    what = "PYTHONPATH="
            elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
                targets = (
                    node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
                )
                for target in targets:
                    base = target.value if isinstance(target, ast.Subscript) else target
                    if _dotted(base) == "sys.path":
                        what = "sys.path"
                    if isinstance(target, ast.Subscript) and _is_pythonpath(target.slice):
                        what = "PYTHONPATH"
            elif isinstance(node, ast.Dict) and any(_is_pythonpath(k) for k in node.keys):
                what = "PYTHONPATH"
            if what:
                found.append(f"{rel}:{getattr(node, 'lineno', 0)}: {what}")
    return found


# (b) every remitnet import resolves under a root ------------------------------------


def resolves(tree: Path, module: str) -> bool:
    """`module` (remitnet.…) is a module (.py) or a package folder (regular
    or a namespace portion) under one of the roots."""
    parts = module.split(".")
    for root in ROOTS:
        path = tree / root / Path(*parts)
        if path.with_suffix(".py").is_file() or path.is_dir():
            return True
    return False


def remitnet_imports(tree: Path) -> list[Import]:
    folders = [*ROOTS, "scripts", "tests"]
    return [
        i
        for path in files(tree, folders)
        for i in imports(tree, path)
        if i.module == "remitnet" or i.module.startswith("remitnet.")
    ]


def unresolved(tree: Path) -> list[str]:
    bad: list[str] = []
    for i in remitnet_imports(tree):
        # The namespace itself has nothing of its own: what is taken from it
        # must be a part of it.
        wanted = [f"remitnet.{n}" for n in i.names] if i.module == "remitnet" else [i.module]
        bad += [
            f"{i}: {m} is not under {', '.join(ROOTS)}" for m in wanted if not resolves(tree, m)
        ]
    return bad


# (c) no folder owns the namespace -----------------------------------------------------


def namespace_inits(tree: Path) -> list[str]:
    return [
        str(p.relative_to(tree))
        for p in files(tree, ["."], (".py", ".pyi"))
        if p.parent.name == "remitnet" and p.stem == "__init__"
    ]


# (d), (e) the architecture's direction -------------------------------------------------


def forbidden_imports(tree: Path, folder: Path, forbidden: Iterable[str]) -> list[str]:
    """Imports in `folder` of any module in `forbidden` or below it, one
    line an import."""
    prefixes = tuple(forbidden)
    found: list[str] = []
    for path in files(tree, [str(folder)]):
        for i in imports(tree, path):
            hits = [
                t for t in i.targets() if any(t == p or t.startswith(p + ".") for p in prefixes)
            ]
            found += [f"{i}: imports {hits[0]}"] if hits else []
    return found


SERVICE_LAYER_MAY_NOT = ("sqlalchemy", "remitnet.services.adapters")
DOMAIN_MAY_NOT = (
    "remitnet.services.service_layer",
    "remitnet.services.adapters",
    "remitnet.services.entrypoints",
    "sqlalchemy",
    "grpc",
)


def grpc_packages(tree: Path, folder: Path) -> list[str]:
    """grpc's own companions (grpc_status, grpc_health, …) count as grpc."""
    return [
        f"{i}: imports {i.module}"
        for path in files(tree, [str(folder)])
        for i in imports(tree, path)
        if i.module.split(".")[0].startswith("grpc_")
    ]


# The tests ---------------------------------------------------------------------------


def test_nothing_edits_sys_path_or_pythonpath() -> None:
    assert path_edits(ROOT) == []


def test_every_remitnet_import_resolves_under_a_root() -> None:
    found = remitnet_imports(ROOT)
    assert len(found) > 100  # the scan sees the tree
    assert unresolved(ROOT) == []


def test_no_folder_holds_remitnet_init() -> None:
    assert namespace_inits(ROOT) == []


def test_service_layer_imports_neither_sqlalchemy_nor_adapters() -> None:
    layer = SERVICES / "service_layer"
    assert files(ROOT, [str(layer)])
    assert forbidden_imports(ROOT, layer, SERVICE_LAYER_MAY_NOT) == []


def test_domain_imports_no_outer_layer_sqlalchemy_or_grpc() -> None:
    domain = SERVICES / "domain"
    assert files(ROOT, [str(domain)])
    assert forbidden_imports(ROOT, domain, DOMAIN_MAY_NOT) == []
    assert grpc_packages(ROOT, domain) == []


# The checks find what they forbid ------------------------------------------------------


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A small tree that breaks every rule once."""
    for text, name in [
        ("import sys\nsys.path.insert(0, 'x')\n", "scripts/a.py"),
        ("import os\nos.environ['PYTHONPATH'] = 'x'\n", "tests/b.py"),
        ("import subprocess\nsubprocess.run([], env={'PYTHONPATH': 'x'})\n", "tests/c.py"),
        ("def f(monkeypatch):\n    monkeypatch.setenv('PYTHONPATH', 'x')\n", "tests/d.py"),
        ("export PYTHONPATH=services\n", "scripts/e.sh"),
        ("from remitnet.clients.nothere import x\nimport remitnet.clients.base\n", "tests/f.py"),
        ("from remitnet import nothere, clients\n", "tests/g.py"),
        ("", "clients/remitnet/clients/base.py"),
        ("", "clients/remitnet/__init__.py"),
        ("from remitnet.services.adapters.db import schema\n", f"{SERVICES}/service_layer/h.py"),
        ("from ..adapters import db\nimport sqlalchemy\n", f"{SERVICES}/service_layer/i.py"),
        ("from ..service_layer import audit\nimport grpc\n", f"{SERVICES}/domain/j.py"),
        ("from grpc_status import rpc_status\n", f"{SERVICES}/domain/k.py"),
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checks_find_what_they_forbid(broken: Path) -> None:
    assert [e.split(":")[0] for e in path_edits(broken)] == [
        "scripts/a.py", "scripts/e.sh", "tests/b.py", "tests/c.py", "tests/d.py",
    ]  # fmt: skip
    assert [e.split(": ")[-1] for e in unresolved(broken) if e.startswith("tests/")] == [
        "remitnet.clients.nothere is not under protos, services, clients",
        "remitnet.nothere is not under protos, services, clients",
    ]
    assert namespace_inits(broken) == ["clients/remitnet/__init__.py"]
    layer = forbidden_imports(broken, SERVICES / "service_layer", SERVICE_LAYER_MAY_NOT)
    assert [e.rsplit(" ", 1)[-1] for e in layer] == [
        "remitnet.services.adapters.db",
        "remitnet.services.adapters",
        "sqlalchemy",
    ]
    domain = forbidden_imports(broken, SERVICES / "domain", DOMAIN_MAY_NOT)
    assert [e.rsplit(" ", 1)[-1] for e in domain] == ["remitnet.services.service_layer", "grpc"]
    assert [e.rsplit(" ", 1)[-1] for e in grpc_packages(broken, SERVICES / "domain")] == [
        "grpc_status"
    ]
