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
# The modules that may talk to Chroma (and import chromadb).
STORAGE = {"store", "session", "local_backend", "server_backend", "manifest", "chroma_ef"}


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
        "plan_paths": "IngestPlan",
        "plan_text": "IngestPlan",
        "plan_records": "IngestPlan",
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


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in a file."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = "ragdb." + module if module else "ragdb"
            found.append((module, [alias.name for alias in node.names]))
    return found


def test_only_the_storage_layer_imports_chromadb() -> None:
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem in STORAGE:
            continue
        for module, _ in _imports(path):
            if module.split(".")[0] == "chromadb":
                offenders.append(f"{path.name} imports {module}")
    assert offenders == []


def test_no_module_takes_another_modules_private_names() -> None:
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        for module, names in _imports(path):
            if module.startswith("ragdb"):
                offenders += [
                    f"{path.name}: {module}.{n}"
                    for n in names
                    if n.startswith("_") and not n.startswith("__")
                ]
    assert offenders == []


def test_no_import_cycles_at_module_level() -> None:
    """Module-level imports between ragdb's modules form no cycle (imports inside
    functions are the deliberate lazy ones)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:  # module level only, TYPE_CHECKING blocks aside
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                deps.add(node.module.split(".")[0])
        graph[path.stem] = deps
    seen: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack, node]))
        if node in seen:
            return
        stack.append(node)
        for dep in graph.get(node, ()):
            visit(dep)
        stack.pop()
        seen.add(node)

    for module in graph:
        visit(module)


def test_all_matches_the_lazy_exports() -> None:
    assert set(ragdb.__all__) == {*ragdb._EXPORTS, "__version__"}
