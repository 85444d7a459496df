"""Store formats: old stores migrate (after a backup), newer ones are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import ragdb.migrations as migrations_module
from ragdb.migrations import MigrationContext, Migrations

from ragdb import KnowledgeBase
from ragdb.store.store import Store

from .conftest import Ragdb

LATEST = len(migrations_module.MIGRATIONS.names())


def older_ragdb(m: pytest.MonkeyPatch, fmt: int) -> None:
    """Make this process a ragdb that knew only the first ``fmt`` migrations."""
    m.setattr(Store, "migrate_upto", migrations_module.MIGRATIONS.names()[fmt - 1])


def make_old_store(
    store: Path, facts_dir: Path, monkeypatch: pytest.MonkeyPatch, fmt: int = 1
) -> None:
    """A store as a ragdb that knew only the first ``fmt`` migrations made it."""
    with monkeypatch.context() as m:
        older_ragdb(m, fmt)
        KnowledgeBase(store=store).ingest([facts_dir])
    manifest = json.loads((store / "ragdb.json").read_text())
    assert manifest["format_version"] == fmt


def hnsw(store: Path) -> dict:
    kb = KnowledgeBase(store=store)
    with kb.store().session() as session:
        return session.index_settings()


def test_old_store_migrates_with_backup(
    local_ragdb: Ragdb, facts_dir: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_old_store(store, facts_dir, monkeypatch)
    before = json.loads(local_ragdb("query", "octopus", "--retrieve-only", "--json").stdout)
    manifest = json.loads((store / "ragdb.json").read_text())
    assert manifest["format_version"] == LATEST
    assert hnsw(store)["ef_search"] == 400
    backups = list((store / "backups").iterdir())
    assert len(backups) == 1 and backups[0].name.startswith("format-1-")
    old = json.loads((backups[0] / "ragdb.json").read_text())
    assert old["format_version"] == 1
    assert (backups[0] / "chroma.sqlite3").is_file()
    # Nothing was lost on the way.
    assert local_ragdb.json("status")["chunks"] == 4
    assert before["chunks"][0]["text"].startswith("The company's favorite animal")
    out = local_ragdb.json("migrate")
    assert out["applied"] == [] and out["format_version"] == LATEST


def test_migrate_command_reports_what_it_applied(
    local_ragdb: Ragdb, facts_dir: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_old_store(store, facts_dir, monkeypatch)
    out = local_ragdb.json("migrate")
    assert out["applied"] == migrations_module.MIGRATIONS.names()[1:]


KILL_IN_MIGRATION = """
import os, signal, sys
import ragdb.migrations as m
from ragdb.store.local import LocalBackend
last = len(m.MIGRATIONS.names())
write = LocalBackend.write_manifest
def write_or_die(self, client, manifest):
    if manifest.get("format_version") == last:
        os.kill(os.getpid(), signal.SIGKILL)  # the last migration ran, but is not recorded
    write(self, client, manifest)
LocalBackend.write_manifest = write_or_die
from ragdb import KnowledgeBase
KnowledgeBase(store=sys.argv[1]).status()
"""


def test_kill_during_migration_leaves_usable_store(
    local_ragdb: Ragdb, facts_dir: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_old_store(store, facts_dir, monkeypatch)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_IN_MIGRATION), str(store)],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9
    manifest = json.loads((store / "ragdb.json").read_text())
    assert manifest["format_version"] == LATEST - 1  # the killed one is not recorded
    # The next open runs it again (each migration is safe to re-run).
    out = local_ragdb.json("query", "octopus", "--retrieve-only")
    assert out["chunks"][0]["source"].endswith("fact3.txt")
    assert json.loads((store / "ragdb.json").read_text())["format_version"] == LATEST
    local_ragdb("doctor")


def test_newer_store_is_refused(local_ragdb: Ragdb, facts_dir: Path, store: Path) -> None:
    local_ragdb("ingest", str(facts_dir))
    path = store / "ragdb.json"
    manifest = json.loads(path.read_text())
    newer = {
        **manifest,
        "format_version": LATEST + 1,
        "ragdb_version": "9.1.0",
        "migrations": [*manifest["migrations"], "m999_from_the_future"],
    }
    path.write_text(json.dumps(newer))
    result = local_ragdb("status", code=1)
    assert "ragdb 9.1.0" in result.stderr and f"up to {LATEST}" in result.stderr
    path.write_text(json.dumps({**manifest, "chromadb_version": "9.0.0"}))
    result = local_ragdb("status", code=1)
    assert "chromadb>=9.0.0" in result.stderr
    path.write_text(json.dumps(manifest))
    local_ragdb("status")


def test_store_from_before_backends_is_recorded_as_torch(
    local_ragdb: Ragdb, facts_dir: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Exactly what ragdb wrote before backends existed: torch vectors, format 2,
    # an embed_model entry without "backend".
    with monkeypatch.context() as m:
        older_ragdb(m, 2)
        KnowledgeBase(store=store, embed_backend="torch").ingest([facts_dir])
    path = store / "ragdb.json"
    manifest = json.loads(path.read_text())
    del manifest["embed_model"]["backend"]
    path.write_text(json.dumps(manifest))
    out = local_ragdb.json("migrate")
    assert out["applied"] == [
        "m003_record_embed_backend",
        "m004_knowledge_bases",
        "m005_manifest_as_record",
        "m006_pruned_write_log",
    ]
    after = json.loads(path.read_text())
    assert after["embed_model"]["backend"] == "torch" and after["format_version"] == LATEST
    # Its queries are embedded by torch's family; int8 is refused.
    hits = local_ragdb.json("query", "octopus", "--retrieve-only", "--mode", "dense")["chunks"]
    assert hits[0]["source"].endswith("fact3.txt")
    assert "torch backend" in local_ragdb("--embed-backend", "onnx-int8", "status", code=1).stderr


def test_migrations_registry_semantics() -> None:
    ran: list[str] = []
    registry = Migrations()

    @registry
    def m1(ctx: MigrationContext) -> None:
        ran.append("m1")
        ctx.manifest["one"] = 1

    @registry
    def m2(ctx: MigrationContext) -> None:
        ran.append("m2")

    def again(ctx: MigrationContext) -> None:
        pass

    again.__name__ = "m1"
    with pytest.raises(ValueError, match="'m1' is already registered"):
        registry(again)
    manifest: dict = {}
    assert registry.pending(manifest) == ["m1", "m2"] and registry.applied(manifest) == []
    ctx = MigrationContext(client=None, manifest=manifest)  # type: ignore[arg-type]
    assert registry.apply(ctx, upto="m1") == ["m1"]
    assert manifest == {"one": 1, "migrations": ["m1"], "format_version": 1}
    assert registry.pending(manifest) == ["m2"] and registry.applied(manifest) == ["m1"]
    assert registry.apply(ctx) == ["m2"] and registry.apply(ctx) == []
    assert ran == ["m1", "m2"] and manifest["format_version"] == 2
    with pytest.raises(ValueError, match="no migration named 'm9'"):
        registry.pending(manifest, upto="m9")
