"""The public API and the package's shape: what `from ragdb import ...` gives,
that every exported name says what it is, and the layering rules that keep
Chroma behind the storage layer."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import ragdb

PACKAGE = Path(ragdb.__file__).resolve().parent
# Shipped as ragdb.migrations, kept at the top of the repository.
MIGRATIONS = PACKAGE.parent / "migrations"


def test_exported_members() -> None:
    assert sorted(ragdb.__all__) == sorted(
        [
            "__version__",
            "Answer",
            "ChunkRecord",
            "DoctorReport",
            "EmbeddingModelError",
            "EmptyStoreError",
            "Finding",
            "Hit",
            "IngestInterrupted",
            "IngestPlan",
            "IngestReport",
            "InputError",
            "KnowledgeBase",
            "LLMError",
            "LLMTimeoutError",
            "ManifestError",
            "MigrateReport",
            "ModelMismatchError",
            "NotAllowedError",
            "Query",
            "RagdbError",
            "ReembedReport",
            "RemoveReport",
            "Retrieval",
            "Settings",
            "SourceInfo",
            "SourceNotFoundError",
            "Status",
            "StoreBusyError",
            "StoreError",
            "StoreNotFoundError",
            "StoreVersionError",
            "UsageError",
            "Support",
            "SentenceSupport",
            "KnowledgeBaseInfo",
            "ExportReport",
            "ImportReport",
            "UnsupportedAnswerError",
            "KnowledgeBaseNotFoundError",
            "KnowledgeBaseExistsError",
        ]
    )
    for name in ragdb.__all__:
        member = getattr(ragdb, name)
        if name == "__version__":
            continue
        assert member.__module__.startswith("ragdb."), name
        assert inspect.getdoc(member), f"{name} has no docstring"
        # Every error is a RagdbError; every result a dataclass (not a dict or tuple).
        if name.endswith("Error"):
            assert issubclass(member, ragdb.RagdbError), name


def test_public_methods_have_docstrings_and_typed_results() -> None:
    for name, method in inspect.getmembers(ragdb.KnowledgeBase, inspect.isfunction):
        if name.startswith("_"):
            continue
        assert inspect.getdoc(method), f"KnowledgeBase.{name} has no docstring"
    results = {
        "ingest": "IngestReport",
        "retrieve": "Retrieval",
        "retrieve_many": "list[Retrieval]",
        "ingest_plan": "IngestReport",
        "ask": "Answer",
        "remove": "RemoveReport",
        "status": "Status",
        "migrate": "MigrateReport",
        "reembed": "ReembedReport",
        "doctor": "DoctorReport",
        "sources": "list[SourceInfo]",
        "chunks": "list[ChunkRecord]",
    }
    for name, annotation in results.items():
        assert inspect.signature(getattr(ragdb.KnowledgeBase, name)).return_annotation == annotation
        bare = annotation.removeprefix("list[").removesuffix("]")
        assert dataclasses.is_dataclass(getattr(ragdb, bare)), bare


def _modules() -> dict[str, Path]:
    """Every module of the package (and its migrations), by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted(MIGRATIONS.glob("*.py")):
        stem = "" if path.stem == "__init__" else "." + path.stem
        out["ragdb.migrations" + stem] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in a module, at
    any depth: inside functions and ``TYPE_CHECKING`` blocks too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names]))
    return found


def test_only_the_storage_package_imports_chromadb() -> None:
    offenders = [
        f"{name} imports {module}"
        for name, path in _modules().items()
        if not name.startswith(("ragdb.store", "ragdb.migrations"))
        for module, _ in _imports(name, path)
        if module.split(".")[0] == "chromadb"
    ]
    assert offenders == []


def test_no_module_takes_another_modules_private_names() -> None:
    offenders = [
        f"{name}: {module}.{n}"
        for name, path in _modules().items()
        for module, names in _imports(name, path)
        if module.startswith("ragdb") and module != name
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert offenders == []


def _graph() -> dict[str, set[str]]:
    """Which of ragdb's modules each one imports, lazily or not."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for module, names in _imports(name, path):
            # `from ragdb.pkg import mod` names a module; `from ragdb.mod import X` a member.
            for target in [f"{module}.{n}" for n in names] + [module]:
                if target in modules and target != name:
                    deps.add(target)
                    break
        graph[name] = deps
    return graph


def test_no_import_cycles_lazy_or_type_only_included() -> None:
    """No circle among ragdb's modules, whether an import is at module level,
    inside a function, or only for type checking."""
    graph = _graph()
    seen: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack, node]))
        if node in seen:
            return
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            visit(dep)
        stack.pop()
        seen.add(node)

    for module in sorted(graph):
        visit(module)


def test_layers_point_one_way() -> None:
    """Lower layers never import higher ones: the surfaces (cli, serve, remote)
    sit on the facade, which sits on ingest and query, then store, then embed."""
    rank = {
        "ragdb.embed": 1,
        "ragdb.store": 2,
        "ragdb.migrations": 2,
        "ragdb.ingest": 3,
        "ragdb.query": 3,
        "ragdb.knowledge_base": 4,
        "ragdb.api": 4,
        "ragdb.evaluate": 4,
        "ragdb.cli": 5,
        "ragdb.serve": 5,
        "ragdb.remote": 5,
    }

    def layer(module: str) -> int:
        for prefix, n in rank.items():
            if module == prefix or module.startswith(prefix + "."):
                return n
        return 0  # the leaves: errors, config, reports, the package itself

    upward = [
        f"{name} -> {dep}"
        for name, deps in _graph().items()
        for dep in deps
        if layer(dep) > layer(name) and layer(name) > 0
    ]
    assert upward == [], upward


def test_all_matches_the_lazy_exports() -> None:
    assert set(ragdb.__all__) == {*ragdb._EXPORTS, "__version__"}


def test_local_and_remote_implement_one_interface() -> None:
    """KnowledgeBase and RemoteKnowledgeBase take what KnowledgeBaseAPI names and
    return the same types, and the CLI chooses between them in one place."""
    from ragdb.api import KnowledgeBaseAPI
    from ragdb.remote import RemoteKnowledgeBase

    members = [n for n, v in vars(KnowledgeBaseAPI).items() if inspect.isfunction(v)]
    members = [n for n in members if not n.startswith("_")]
    assert {"ask", "ingest_plan", "remove", "status", "sources"} <= set(members)
    for cls in (ragdb.KnowledgeBase, RemoteKnowledgeBase):
        for name in members:
            want = inspect.signature(getattr(KnowledgeBaseAPI, name))
            have = inspect.signature(getattr(cls, name))
            assert have.return_annotation == want.return_annotation, (cls, name)
            open_ended = any(p.kind is p.VAR_KEYWORD for p in have.parameters.values())
            for param in want.parameters:
                assert param in have.parameters or open_ended, (cls, name, param)
    cli = (PACKAGE / "cli" / "__init__.py").read_text()
    assert cli.count("_server(ctx)") == 1 and "RemoteKnowledgeBase(" not in cli
