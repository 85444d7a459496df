"""The ``ragdb`` command: parses options, calls the library, formats output.

Results go to stdout (``--json`` for machines); progress and warnings go to
stderr. Every :class:`~ragdb.errors.RagdbError` becomes a one-line message and
its exit code here, in :class:`RagdbGroup`, and nowhere else.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ragdb.config import DEFAULT_KB, SETTING
from ragdb.errors import RagdbError, UsageError
from ragdb.query.retrieve import DEFAULT_MODE, MODES
from ragdb.version import __version__

if TYPE_CHECKING:
    from ragdb.api import KnowledgeBaseAPI
    from ragdb.knowledge_base import KnowledgeBase
    from ragdb.query.answer import Answer
    from ragdb.query.retrieve import Hit
    from ragdb.query.support import Support
    from ragdb.remote import RemoteKnowledgeBase


class RagdbCommand(click.Command):
    """A subcommand whose usage errors show its own usage line, not the group's,
    and say where a global option goes when one is given after the command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            group = ctx.parent.command if ctx.parent is not None else None
            names = {n for p in getattr(group, "params", []) for n in p.opts}
            if exc.option_name in names:
                raise click.UsageError(
                    f"{exc.option_name} is a global option: put it before the command "
                    f"(ragdb {exc.option_name} ... {ctx.info_name} ...)",
                    ctx,
                ) from None
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise click.UsageError(str(exc), ctx) from None


class RagdbGroup(click.Group):
    command_class = RagdbCommand

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise click.UsageError(str(exc), ctx) from None
        except RagdbError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            summary = getattr(exc, "summary", None)
            click.echo(f"Interrupted: {summary()}." if summary else "Interrupted.", err=True)
            sys.exit(130)


def _fail(message: str, code: int) -> NoReturn:
    # ClickException's exit code is a class attribute: one subclass per code.
    error_class = type("RagdbFailure", (click.ClickException,), {"exit_code": code})
    raise error_class(message)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


F = TypeVar("F", bound=Callable[..., Any])


def setting_option(name: str, **kwargs: Any) -> Callable[[F], F]:
    """The click option of setting ``name``, its help from the settings table."""
    setting = SETTING[name]
    assert setting.option is not None
    return click.option(setting.option, name, help=setting.option_help(), **kwargs)


device_option = setting_option("device", type=click.Choice(["auto", "cpu", "cuda", "mps"]))

mode_option = click.option(
    "--mode",
    type=click.Choice(MODES),
    default=None,
    help=f"Retrieve by embedding, by keywords (BM25), or both fused [default: {DEFAULT_MODE}].",
)


class _Bar:
    """A tqdm bar on stderr, made on first use (so nothing shows when there is no
    work); its total may grow as work is discovered. Where stderr is no terminal
    (a log, a pipe) it writes a plain line at the start, every few seconds and
    at the end instead, so long work is never silent."""

    EVERY = 5.0  # seconds between plain lines

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit = desc, unit
        self.bar: Any = None
        self.plain = not sys.stderr.isatty()
        self.said = 0.0
        self.last: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        if total == 0:
            return
        if self.plain:
            self._line(done, total)
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                unit=self.unit,
                desc=self.desc,
                file=sys.stderr,
                disable=None,
                dynamic_ncols=True,
            )
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def _line(self, done: int, total: int) -> None:
        now = time.monotonic()
        self.last = (done, total)
        if self.said and now - self.said < self.EVERY and done < total:
            return
        self.said = now
        click.echo(f"{self.desc}: {done:,} of {total:,} {self.unit}s", err=True)
        self.last = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.plain and self.last is not None:
            done, total = self.last
            click.echo(f"{self.desc}: {done:,} of {total:,} {self.unit}s", err=True)


class _Warnings:
    """An ingest's warnings on stderr: the first few one by one, then a summary
    of the skipped sources by reason (a folder of a thousand images should not
    print a thousand lines on every run)."""

    SHOWN = 10

    def __init__(self) -> None:
        self.skips = 0

    def __call__(self, message: str) -> None:
        from ragdb.ingest.inputs import Note

        if isinstance(message, Note):  # how it goes, not what went wrong
            click.echo(message, err=True)
            return
        if message.startswith("skipped "):
            self.skips += 1
            if self.skips > self.SHOWN:
                return
        _warn(message)

    def summarise(self, skipped: list[dict[str, str]]) -> None:
        if self.skips <= self.SHOWN:
            return
        from collections import Counter

        reasons = Counter(s["reason"].split(";")[0] for s in skipped)
        common = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common(5))
        _warn(
            f"... {self.skips - self.SHOWN} more skipped; {len(skipped)} in all: {common} "
            "(--json lists each)"
        )


def _kb(ctx: click.Context, **options: Any) -> KnowledgeBase:
    from ragdb.config import Settings
    from ragdb.knowledge_base import KnowledgeBase

    given = {k: v for k, v in options.items() if v is not None}  # a command's own win
    settings = Settings.resolve(**{**ctx.obj, **given})
    return KnowledgeBase(settings)


def _open(ctx: click.Context, **own: Any) -> KnowledgeBaseAPI:
    """The knowledge base a command works on: the running ``ragdb serve`` of
    this store (or ``--url``'s) when there is one, unless the command asks for
    something of its own (a model, a device: ``own`` options given), which only
    this process can honour; else in-process."""
    if all(value is None for value in own.values()):
        server = _server(ctx)
        if server is not None:
            return server
    return _kb(ctx, **own)


def _server(ctx: click.Context) -> RemoteKnowledgeBase | None:
    """The running ``ragdb serve`` to ask instead of working in-process, if any
    (see :mod:`ragdb.remote`); never with --no-server."""
    root = ctx.find_root()
    if root.meta.get("ragdb.no_server"):
        return None
    from ragdb.config import Settings
    from ragdb.remote import find_server

    settings = Settings.resolve(**ctx.obj)
    store = None if settings.chroma_url else settings.store.resolve()
    return find_server(store, settings.url, settings.api_key, settings.kb)


@click.group(cls=RagdbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ragdb")
@setting_option("store", type=click.Path(file_okay=False))
@setting_option("kb", metavar="NAME")
@setting_option("chroma_url", metavar="URL")
@setting_option("chroma_headers", multiple=True, metavar="'NAME: VALUE'")
@setting_option("chroma_token", metavar="TOKEN")
@setting_option("chroma_max_batch", type=click.IntRange(min=1), metavar="N")
@setting_option("chroma_tenant", metavar="NAME")
@setting_option("chroma_database", metavar="NAME")
@setting_option("embed_model", metavar="NAME")
@setting_option("embed_backend", type=click.Choice(["torch", "onnx", "onnx-int8"]))
@setting_option("wait", type=click.FloatRange(min=0), metavar="SECONDS")
@setting_option("url", metavar="URL")
@click.option(
    "--no-server",
    is_flag=True,
    help="Work in-process even when a ragdb serve for this store is running.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    store: str | None,
    kb: str | None,
    chroma_url: str | None,
    chroma_headers: tuple[str, ...],
    chroma_token: str | None,
    chroma_max_batch: int | None,
    chroma_tenant: str | None,
    chroma_database: str | None,
    embed_model: str | None,
    embed_backend: str | None,
    wait: float | None,
    url: str | None,
    no_server: bool,
) -> None:
    """ragdb: a persistent knowledge base you ask questions of.

    Documents are embedded into a local Chroma store; questions are answered by a
    local model (Ollama by default) from the passages retrieved.
    """
    from ragdb.config import parse_headers

    ctx.obj = {
        "store": store,
        "kb": kb,
        "chroma_url": chroma_url,
        "chroma_headers": parse_headers(chroma_headers) if chroma_headers else None,
        "chroma_token": chroma_token,
        "chroma_max_batch": chroma_max_batch,
        "chroma_tenant": chroma_tenant,
        "chroma_database": chroma_database,
        "embed_model": embed_model,
        "embed_backend": embed_backend,
        "wait": wait,
        "url": url,
    }
    ctx.meta["ragdb.no_server"] = no_server


# -- ingest ---------------------------------------------------------------------------
@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--name", help="Source name for text read from standard input ('-').")
@click.option(
    "--records",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="A JSONL or CSV file whose records are each a source.",
)
@click.option("--id-field", default="id", show_default=True, help="Record id field.")
@click.option(
    "--id-prefix",
    default="",
    metavar="TEXT",
    help="Prefix for the source names of records (keeps two records files apart).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace a stored source of the same name that came from elsewhere "
    "(another file type, standard input, another records file) instead of refusing.",
)
@click.option("--text-field", default="text", show_default=True, help="Record text field.")
@click.option("--title-field", help="Record title field (prefixed to the text).")
@click.option(
    "--meta-field",
    "meta_fields",
    multiple=True,
    help="Record field to keep as metadata (repeatable).",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Also remove stored files that are gone from the directories or quoted glob "
    "patterns given (or records gone from --records FILE, pages a --crawl no longer "
    "reaches).",
)
@click.option(
    "--meta",
    "meta_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Metadata for every chunk of what is ingested (repeatable); query --where "
    "selects on it. Numbers and true/false are kept as such.",
)
@click.option(
    "--crawl",
    is_flag=True,
    help="For a URL: also follow its same-site links (see --depth, --max-pages).",
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    help="How many links from the URL a crawl follows (implies --crawl).  [default: 2]",
)
@click.option(
    "--max-pages",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many pages per crawl.",
)
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait between a crawl's requests (longer if robots.txt asks).",
)
@click.option(
    "--fetch-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up on a web page after this long (its stored version is kept).",
)
@click.option(
    "--ocr",
    type=click.Choice(["on", "images", "off"]),
    default="on",
    show_default=True,
    help="What OCR reads: images and scanned PDF pages (on), images only, or nothing.",
)
@click.option("--no-ocr", is_flag=True, help="Read nothing by OCR (the same as --ocr off).")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def ingest(
    ctx: click.Context,
    paths: tuple[str, ...],
    name: str | None,
    records: str | None,
    id_field: str,
    id_prefix: str,
    replace: bool,
    text_field: str,
    title_field: str | None,
    meta_fields: tuple[str, ...],
    prune: bool,
    meta_pairs: tuple[str, ...],
    crawl: bool,
    depth: int | None,
    max_pages: int,
    delay: float,
    fetch_timeout: float,
    ocr: str,
    no_ocr: bool,
    device: str | None,
    as_json: bool,
) -> None:
    """Add files, directories, glob patterns, web pages (URLs) or '-' (stdin)
    to the knowledge base.

    Only new or changed sources are embedded; a changed file's chunks are replaced.
    With --records, each record of a JSONL/CSV file is a source named by its id.
    A URL is fetched (conditionally, when stored) and its main text stored under
    it; with --crawl, its same-site links too, as robots.txt allows.
    """
    if records is not None and paths:
        raise UsageError("give either PATHS or --records FILE, not both")
    if records is None and not paths:
        raise UsageError("nothing to ingest: give PATHS, '-' or --records FILE")
    if "-" in paths and len(paths) > 1:
        raise UsageError("'-' (standard input) cannot be combined with other paths")
    if name is not None and "-" not in paths:
        raise UsageError("--name applies only to standard input ('-')")
    if id_prefix and records is None:
        raise UsageError("--id-prefix applies only to --records")
    from ragdb.ingest.plan import parse_meta, plan_paths, plan_records, plan_text

    metadata = parse_meta(meta_pairs)
    if metadata and records is not None:
        raise UsageError("--meta applies to files and standard input; records use --meta-field")

    # The plan is made here, where the files are; a running server carries it out
    # (unless this command names a --device of its own: then this process embeds).
    if records is not None:
        plan = plan_records(
            records,
            id_field=id_field,
            text_field=text_field,
            title_field=title_field,
            meta_fields=meta_fields,
            prune=prune,
            id_prefix=id_prefix,
            replace=replace,
        )
    elif paths == ("-",):
        data = sys.stdin.buffer.read()
        if not data.strip():
            raise RagdbError("standard input is empty: nothing to ingest")
        if name is None:
            # Each unnamed input a source of its own: never one "stdin" replacing another.
            now = time.time()
            name = f"stdin-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
            name += f".{int(now * 1000) % 1000:03d}"
            click.echo(f"storing standard input as {name!r} (--name sets another)", err=True)
        plan = plan_text(name, data, replace=replace, metadata=metadata)
    else:
        from ragdb.ingest.web import WebOptions

        ocr = "off" if no_ocr else ocr
        web = WebOptions(
            depth=depth or (2 if crawl else 0),
            max_pages=max_pages,
            delay=delay,
            timeout=fetch_timeout,
        )
        plan = plan_paths(
            list(paths),
            prune=prune,
            replace=replace,
            warn=_warn,
            ocr=ocr,
            web=web,
            metadata=metadata,
        )
    kb = _open(ctx, device=device)
    progress = _Bar("embedding", "chunk")
    warn = _Warnings()
    try:
        report = kb.ingest_plan(plan, progress=progress, warn=warn)
    finally:
        progress.close()
    warn.summarise(report.skipped_sources)
    if as_json:
        _emit_json(report.to_dict())
    else:
        click.echo(report.summary())
    ingested = report.added + report.updated + report.unchanged
    if report.skipped and ingested == 0 and report.removed == 0:
        _fail(f"nothing ingested: {report.skipped} input(s) skipped", 1)


# -- query ----------------------------------------------------------------------------
def _print_hit(hit: Hit, width: int = 300, show_kb: bool = False) -> None:
    head = click.style(f"[{hit.rank}]", bold=True)
    # In hybrid and bm25 modes the order is not the similarity's: say what it is.
    order = ""
    if "fused" in hit.scores:
        order = f", fused rank score {hit.scores['fused']:.4f}"
    elif "bm25" in hit.scores:
        order = f", BM25 {hit.scores['bm25']:.2f}"
    where = f"{hit.kb}: " if show_kb else ""
    click.echo(f"{head} {where}{hit.source}  ({hit.location}, similarity {hit.score:.3f}{order})")
    text = " ".join(hit.text.split())
    if len(text) > width:
        text = text[: width - 1] + "…"
    click.echo(f"    {text}")


@cli.command()
@click.argument("question")
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="How many chunks to retrieve.",
)
@mode_option
@click.option("--retrieve-only", is_flag=True, help="Only retrieve; do not ask the model.")
@click.option(
    "--min-score",
    type=click.FloatRange(-1.0, 1.0),
    metavar="S",
    help="Answer 'not enough information' unless a chunk reaches this similarity.",
)
@click.option(
    "--context-tokens",
    type=click.IntRange(min=16),
    default=None,
    help="Token budget for the context sent to the model [default 1500].",
)
@click.option("--show-thinking", is_flag=True, help="Show the model's <think> blocks.")
@click.option(
    "--where",
    multiple=True,
    metavar="COND",
    help="Only chunks meeting COND (repeatable, all must hold): 'tag=ml', 'year>=2020', "
    "'modified>=2026-01-01', 'type in pdf,docx', 'author!=Ann'.",
)
@click.option("--source", "source_glob", metavar="GLOB", help="Only sources matching GLOB.")
@click.option("--type", "kind", metavar="FORMAT", help="Only sources of FORMAT (pdf, docx...).")
@click.option(
    "--kb",
    "kbs",
    multiple=True,
    metavar="NAME",
    help="Search knowledge base NAME (repeatable: several, fused into one ranking).",
)
@click.option("--all", "all_kbs", is_flag=True, help="Search every knowledge base of the store.")
@click.option(
    "--require-support",
    is_flag=True,
    help="Exit 5 (the answer still printed) when a sentence of it is not backed by the chunks.",
)
@setting_option("llm_url", metavar="URL")
@setting_option("llm_model", metavar="NAME")
@setting_option("llm_timeout", type=click.FloatRange(min=0.1), metavar="SECONDS")
@setting_option("llm_max_tokens", type=click.IntRange(min=1), metavar="N")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def query(
    ctx: click.Context,
    question: str,
    k: int,
    mode: str | None,
    retrieve_only: bool,
    min_score: float | None,
    context_tokens: int | None,
    show_thinking: bool,
    where: tuple[str, ...],
    source_glob: str | None,
    kind: str | None,
    kbs: tuple[str, ...],
    all_kbs: bool,
    require_support: bool,
    llm_url: str | None,
    llm_model: str | None,
    llm_timeout: float | None,
    llm_max_tokens: int | None,
    device: str | None,
    as_json: bool,
) -> None:
    """Answer QUESTION from the knowledge base, citing the chunks retrieved."""
    from ragdb.config import check_kb_name
    from ragdb.errors import LLMError, UnsupportedAnswerError
    from ragdb.query.filters import Filter
    from ragdb.query.generate import DEFAULT_CONTEXT_TOKENS

    conditions = Filter.parse(where, source_glob, kind).to_wire()
    if all_kbs and kbs:
        raise UsageError("give --kb NAME or --all, not both")
    for name in kbs:
        check_kb_name(name)
    asked = ("*",) if all_kbs else kbs
    kb = _open(
        ctx,
        llm_url=llm_url,
        llm_model=llm_model,
        llm_timeout=llm_timeout,
        llm_max_tokens=llm_max_tokens,
        device=device,
    )

    def on_hits(hits: list[Hit]) -> None:
        if not hits:
            click.echo("No chunks retrieved.")
        for hit in hits:
            _print_hit(hit, show_kb=len(asked) > 1 or asked == ("*",))
        if not retrieve_only:
            click.echo()
            click.secho("Answer:", bold=True)

    def on_text(piece: str) -> None:
        click.echo(piece, nl=False)
        sys.stdout.flush()

    try:
        result = kb.ask(
            question,
            k,
            mode=mode or DEFAULT_MODE,
            min_score=min_score,
            context_tokens=context_tokens or DEFAULT_CONTEXT_TOKENS,
            show_thinking=show_thinking,
            retrieve_only=retrieve_only,
            # --json prints one object at the end: nothing streams.
            on_hits=None if as_json else on_hits,
            on_text=None if as_json else on_text,
            where=conditions,
            kbs=asked,
            require_support=require_support,
        )
    except UnsupportedAnswerError as exc:
        _show_answered(exc.answer, as_json, retrieve_only)
        raise
    except LLMError as exc:
        if as_json and exc.answer is not None:
            _emit_json(exc.answer.to_dict())
        elif not as_json:
            click.echo()
        raise
    _show_answered(result, as_json, retrieve_only)


def _show_answered(result: Answer, as_json: bool, retrieve_only: bool) -> None:
    """After the streamed answer: its support, and what cut it short."""
    if as_json:
        _emit_json(result.to_dict())
        return
    if not retrieve_only:
        click.echo()
    if result.support is not None:
        _print_support(result.support)
    if result.truncated:
        _warn(f"the answer was cut short: {result.truncated_note or result.truncated_reason}")


def _print_support(support: Support) -> None:
    """Each sentence the chunks do not fully back, marked, with what backs it
    best; one line on stderr when some are not backed at all."""
    marks = {"weak": "?", "unsupported": "!"}
    doubtful = [s for s in support.sentences if s.verdict != "supported" or s.problems]
    if doubtful:
        click.echo()
        click.secho("Support (! not backed by the chunks, ? weakly):", bold=True)
    for s in doubtful:
        best = f"best [{s.best[0]}], " if s.best else ""
        click.echo(f"  {marks.get(s.verdict, ' ')} {s.text}  ({best}score {s.score:.2f})")
        for problem in s.problems:
            click.echo(f"      {problem}")
    if support.unsupported:
        _warn(
            f"{support.unsupported} of {len(support.sentences)} sentence(s) of the answer "
            "are not backed by the retrieved chunks"
        )


@cli.command()
@click.argument("question")
@click.option("--answer", "answer_text", metavar="TEXT", help="The answer to check.")
@click.option(
    "--answer-file",
    type=click.File("r", encoding="utf-8"),
    help="Read the answer from a file ('-': standard input).",
)
@click.option("-k", "k", type=click.IntRange(min=1), default=4, show_default=True,
              help="How many chunks to check it against.")  # fmt: skip
@mode_option
@click.option("--where", multiple=True, metavar="COND", help="Only chunks meeting COND.")
@click.option("--id", "ids", multiple=True, metavar="CHUNK", help="Check against these chunks.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def check(
    ctx: click.Context,
    question: str,
    answer_text: str | None,
    answer_file: Any,
    k: int,
    mode: str | None,
    where: tuple[str, ...],
    ids: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check an ANSWER to QUESTION written elsewhere: which of its sentences the
    knowledge base's chunks back. Exits 5 when one is not backed."""
    if (answer_text is None) == (answer_file is None):
        raise UsageError("give the answer with --answer TEXT or --answer-file FILE ('-': stdin)")
    text = answer_text if answer_text is not None else answer_file.read()
    checked = _open(ctx).check(question, text, k, mode=mode or DEFAULT_MODE, where=where, ids=ids)
    if as_json:
        _emit_json(checked.to_dict())
    else:
        for hit in checked.hits:
            _print_hit(hit)
        assert checked.support is not None
        s = checked.support
        click.echo(
            f"{sum(x.verdict == 'supported' for x in s.sentences)} of {len(s.sentences)} "
            f"sentence(s) backed (grounded {s.grounded:.0%})"
        )
        _print_support(s)
    if checked.support is not None and checked.support.unsupported:
        _fail("the answer has sentences the knowledge base does not back", 5)


# -- remove, reset, status, sources -------------------------------------------------------
@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before removing several sources.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@click.pass_context
def remove(ctx: click.Context, targets: tuple[str, ...], yes: bool, as_json: bool) -> None:
    """Remove sources: stored names, file paths, directories (all sources under
    them) or quoted glob patterns. More than one source asks first on a terminal."""
    kb = _open(ctx)
    found = kb.matching_sources(list(targets))
    if len(found) > 1 and not yes and sys.stdin.isatty():
        click.confirm(
            f"Remove {len(found)} sources ({sum(found.values())} chunks)?", abort=True, err=True
        )
    report = kb.remove(list(found))
    if as_json:
        _emit_json(report.to_dict())
    else:
        for source in report.removed:
            click.echo(f"removed {source}")
        click.echo(
            f"{_count(len(report.removed), 'source')}, "
            f"{_count(report.chunks_removed, 'chunk')} removed"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@cli.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def reset(ctx: click.Context, yes: bool) -> None:
    """Empty the knowledge base (the store and its settings stay)."""
    kb = _kb(ctx)
    status = kb.status()
    if not yes:
        click.confirm(
            f"Delete all {status.chunks} chunks of {status.sources} sources from {status.store}?",
            abort=True,
            err=True,
        )
    n = kb.reset()
    click.echo(f"removed {n} chunk(s); the knowledge base at {status.store} is empty")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show where the store is, what it holds and how it was made."""
    info = _open(ctx).status().to_dict()
    if as_json:
        _emit_json(info)
        return
    labels = {
        "store": "store",
        "mode": "mode",
        "kb": "knowledge base",
        "collection": "collection",
        "index": "vector index",
        "chunks": "chunks",
        "sources": "sources",
        "embed_model": "embedding model",
        "embed_backend": "backend",
        "embed_dimension": "dimension",
        "format_version": "store format",
        "ragdb_version": "written by ragdb",
        "chromadb_version": "chromadb",
        "updated_at": "last change",
    }
    for key, label in labels.items():
        value = info.get(key)
        click.echo(f"{label + ':':<18} {_when(value) if key == 'updated_at' else value}")


# -- knowledge bases --------------------------------------------------------------------
@cli.group("kb", cls=RagdbGroup)
def kb_group() -> None:
    """List, create, rename and delete the store's knowledge bases. Every
    command works on one (`ragdb --kb NAME ...`, default `default`); an ingest
    into a new name makes it."""


@kb_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def kb_list(ctx: click.Context, as_json: bool) -> None:
    """List the knowledge bases with what each holds."""
    items = _open(ctx).knowledge_bases()
    if as_json:
        _emit_json([item.to_dict() for item in items])
        return
    click.echo(f"{'chunks':>7}  {'sources':>7}  name")
    for item in items:
        click.echo(f"{item.chunks:>7}  {item.sources:>7}  {item.name}")


@kb_group.command("create")
@click.argument("name")
@click.pass_context
def kb_create(ctx: click.Context, name: str) -> None:
    """Make knowledge base NAME, empty."""
    _open(ctx).create_kb(name)
    click.echo(f"created knowledge base {name}")


@kb_group.command("rename")
@click.argument("old")
@click.argument("new")
@click.pass_context
def kb_rename(ctx: click.Context, old: str, new: str) -> None:
    """Call knowledge base OLD NEW (its chunks stay as they are)."""
    _open(ctx).rename_kb(old, new)
    click.echo(f"renamed knowledge base {old} to {new}")


@kb_group.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def kb_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete knowledge base NAME and everything in it."""
    kb = _open(ctx)
    if not yes and name != DEFAULT_KB:  # the default is refused without asking
        held = {i.name: i for i in kb.knowledge_bases()}
        if name in held:
            click.confirm(
                f"Delete knowledge base {name} ({held[name].chunks} chunks of "
                f"{held[name].sources} sources)?",
                abort=True,
                err=True,
            )
    n = kb.delete_kb(name)
    click.echo(f"deleted knowledge base {name} ({_count(n, 'chunk')})")


# -- export and import ---------------------------------------------------------------------
kb_option = click.option(
    "--kb", "kb_name", metavar="NAME", help="The knowledge base (as the global --kb does)."
)


@cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@kb_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def export_cmd(ctx: click.Context, file: str, kb_name: str | None, as_json: bool) -> None:
    """Write a knowledge base (chunks, metadata, vectors, model) to an archive FILE,
    to restore elsewhere with `ragdb import` without embedding again."""
    report = _kb(ctx, kb=kb_name).export(file)
    if as_json:
        _emit_json(report.to_dict())
    else:
        click.echo(
            f"exported {_count(report.sources, 'source')} ({_count(report.chunks, 'chunk')}) "
            f"of knowledge base {report.kb} to {report.file}"
        )


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@kb_option
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def import_cmd(
    ctx: click.Context, file: str, kb_name: str | None, device: str | None, as_json: bool
) -> None:
    """Restore an archive `ragdb export` wrote into a knowledge base (made if
    need be), embedding nothing when the store's model made its vectors."""
    report = _kb(ctx, kb=kb_name, device=device).import_archive(file, warn=_note)
    if as_json:
        _emit_json(report.to_dict())
        return
    how = f"embedded anew with {report.to_model}" if report.reembedded else "vectors as stored"
    click.echo(
        f"imported into knowledge base {report.kb}: {report.added} added, {report.updated} "
        f"updated, {report.unchanged} unchanged; {_count(report.chunks, 'chunk')} ({how})"
    )


def _note(message: str) -> None:
    click.echo(message, err=True)


def _when(iso: Any) -> str:
    """A stored time (ISO 8601, UTC) as people read it, saying it is UTC."""
    text = str(iso or "")
    return f"{text[:10]} {text[11:19]} UTC" if len(text) >= 19 else text


@cli.command("sources")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def sources_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the sources in the knowledge base."""
    items = _open(ctx).sources()
    if as_json:
        _emit_json([item.to_dict() for item in items])
        return
    if items:
        click.echo(f"{'chunks':>6}  {'ingested (UTC)':<19}  source")
    for item in items:
        # One line per source, whatever its name holds (a newline in a file name
        # is escaped; other characters, accents and all, are shown as they are).
        name = "".join(
            ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
            for ch in item.source
        )
        click.echo(f"{item.n_chunks:>6}  {_when(item.ingested_at)[:19]}  {name}")


# -- evaluation ---------------------------------------------------------------------------
@cli.command("eval")
@click.option(
    "--queries",
    required=True,
    type=click.Path(dir_okay=False),
    help='Questions, one JSON object per line: {"_id", "text"}.',
)
@click.option(
    "--qrels",
    required=True,
    type=click.Path(dir_okay=False),
    help="Judgements: query-id <TAB> corpus-id <TAB> score (source ids or paths).",
)
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Cut-off for nDCG, recall and MRR.",
)
@mode_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--run-file",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write each query's ranked sources to this JSON file.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write an HTML report comparing every mode (`ragdb serve` shows it at /eval).",
)
@device_option
@click.pass_context
def eval_cmd(
    ctx: click.Context,
    queries: str,
    qrels: str,
    k: int,
    mode: str | None,
    as_json: bool,
    run_file: str | None,
    report: str | None,
    device: str | None,
) -> None:
    """Measure retrieval quality: nDCG, recall and MRR of the sources ranked."""
    from ragdb.evaluate import evaluate
    from ragdb.query.retrieve import MODES

    kb = _kb(ctx, device=device)
    mode = mode or DEFAULT_MODE
    # The report compares every mode; the one asked for is printed.
    modes = [mode, *(m for m in MODES if m != mode)] if report else [mode]
    results = {}
    for each in modes:
        progress = _Bar(f"evaluating {each}" if report else "evaluating", "query")
        try:
            results[each] = evaluate(kb, queries, qrels, mode=each, k=k, progress=progress)
        finally:
            progress.close()
    if report:
        _write_report(kb, results, k, report)
    result = dict(results[mode])
    run = result.pop("run")
    result.pop("per_query")
    if result["relevant_docs_missing"]:
        _warn(
            f"{result['relevant_docs_missing']} of the {result['relevant_docs_judged']} documents "
            "judged relevant are not in the knowledge base; they count as never retrieved"
        )
    if run_file:
        with open(run_file, "w", encoding="utf-8") as fh:
            json.dump(run, fh)
    if as_json:
        _emit_json(result)
        return
    for key, value in result.items():
        click.echo(f"{key:>16}: {value}")


def _write_report(kb: Any, results: dict[str, Any], k: int, path: str) -> None:
    from pathlib import Path

    from ragdb.eval_report import render_report, write_report

    store = kb.status().store
    html = render_report(results, k, f"ragdb evaluation of {store}")
    try:
        write_report(html, Path(path), store)
    except OSError as exc:
        raise UsageError(f"cannot write the report {path}: {exc.strerror}") from exc
    _note(f"report written to {path}")


# -- upkeep -----------------------------------------------------------------------------
@cli.command()
@click.option("--repair", is_flag=True, help="Fix what can be fixed.")
@click.option("--yes", "-y", is_flag=True, help="Rebuild a lost manifest without asking.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@device_option
@click.pass_context
def doctor(ctx: click.Context, repair: bool, yes: bool, as_json: bool, device: str | None) -> None:
    """Check the store; exit 0 when healthy, 1 when not."""

    def confirm(source: str) -> bool:
        # The rebuilt manifest is a reconstruction: a person agrees to it first.
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(f"the manifest would be rebuilt from {source}: add --yes to do so")
        return click.confirm(f"Rebuild the manifest from {source}?", err=True)

    progress = _Bar("rebuilding the vector index", "chunk")
    try:
        report = _kb(ctx, device=device).doctor(repair=repair, confirm=confirm, progress=progress)
    finally:
        progress.close()
    if as_json:
        _emit_json(report.to_dict())
    else:
        for line in report.repaired:
            click.echo(f"repaired: {line}")
        for finding in report.findings:
            click.echo(f"problem: {finding.problem}: {finding.detail}")
        state = "healthy" if report.healthy else "NOT healthy"
        counts = (
            f"{report.chunks} chunks, {report.sources} sources"
            if report.chunks is not None
            else "chunks and sources not counted: the store does not read until repaired"
        )
        click.echo(f"{report.store}: {state} ({counts})")
        if len(report.knowledge_bases) > 1:
            for name, held in report.knowledge_bases.items():
                bad = sum(f.kb == name for f in report.findings)
                click.echo(
                    f"  knowledge base {name}: {held['chunks']} chunks, {held['sources']} "
                    f"sources, {_count(bad, 'problem')}"
                )
    if not report.healthy:
        _fail(
            f"{len(report.findings)} problem(s) found"
            + ("" if repair else "; `ragdb doctor --repair` fixes what it can"),
            1,
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def migrate(ctx: click.Context, as_json: bool) -> None:
    """Bring the store to this ragdb's format (a backup is taken first)."""
    info = _kb(ctx).migrate().to_dict()
    if as_json:
        _emit_json(info)
    elif info["applied"]:
        click.echo(f"applied {', '.join(info['applied'])}; format {info['format_version']}")
    else:
        click.echo(f"{info['store']} is up to date (format {info['format_version']})")


@cli.command()
@click.option(
    "--to-model",
    "model",
    metavar="NAME",
    help="The embedding model to re-embed every chunk with [default: the store's].",
)
@click.option(
    "--to-backend",
    "backend",
    type=click.Choice(["torch", "onnx", "onnx-int8"]),
    help="The backend to re-embed with [default: the store's for its own model, "
    "else the default for the new one].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@device_option
@click.pass_context
def reembed(
    ctx: click.Context,
    model: str | None,
    backend: str | None,
    as_json: bool,
    device: str | None,
) -> None:
    """Re-embed every chunk with another model or backend, then switch to it atomically."""
    if model is None and backend is None:
        raise UsageError("give --to-model NAME, --to-backend B, or both")
    progress = _Bar("re-embedding", "chunk")

    kb = _kb(ctx, device=device)
    # The store opens with its current model and backend, whatever
    # --embed-model/--embed-backend or RAGDB_EMBED_* say: those are the target's.
    kb.settings = kb.settings.replace(embed_model=None, embed_backend=None)
    try:
        info = kb.reembed(model, progress=progress, backend=backend).to_dict()
    finally:
        progress.close()
    if as_json:
        _emit_json(info)
    else:
        click.echo(
            f"re-embedded {info['chunks']} chunks with {info['to']} ({info['to_backend']}; "
            f"was {info['from']} ({info['from_backend']}))"
        )


# -- the service -----------------------------------------------------------------------
@cli.command()
@setting_option("serve_host", metavar="HOST")
@setting_option("serve_port", type=click.IntRange(1, 65535), metavar="PORT")
@setting_option("api_key", metavar="KEY")
@setting_option("api_key_file", metavar="FILE")
@click.option("--no-auth", is_flag=True, help="Need no API key (loopback addresses only).")
@click.option(
    "--role",
    type=click.Choice(["all", "query", "ingest"]),
    default="all",
    show_default=True,
    help="In a tier of replicas: query answers reads only (writes get 421 naming the worker); "
    "ingest is the one worker that takes writes, jobs and watches.",
)
@click.option(
    "--ingest-url",
    metavar="URL",
    help="The ingest worker's URL, named to clients whose writes reach a query replica.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Another Host header to answer (repeatable); others get 403.",
)
@click.option("--cors", multiple=True, metavar="ORIGIN", help="Allow browser requests from ORIGIN.")
@click.option(
    "--allow-path",
    "allow_paths",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="A directory whose files POST /v1/ingest may read (repeatable).",
)
@click.option(
    "--watch",
    "watch",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Keep a directory in sync with the store, as `ingest --prune DIR` would (repeatable).",
)
@click.option("--poll", is_flag=True, help="Watch by polling (network file systems).")
@click.option(
    "--max-upload-mb",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Largest upload (POST /v1/documents, or an ingest sent by a CLI) taken; "
    "larger ones get 413.",
)
@click.option("--allow-reset", is_flag=True, help="Let POST /v1/reset empty the knowledge base.")
@click.option(
    "--sources-format",
    type=click.Choice(["annotations", "openwebui"]),
    default="annotations",
    show_default=True,
    help="How chat answers send their sources: OpenAI's url_citation annotations, or "
    "Open WebUI's source events (a request's ragdb.sources overrides).",
)
@click.option(
    "--access-log", is_flag=True, help="Log each request on stderr (method, path, status, time)."
)
@click.option(
    "--mcp-write",
    is_flag=True,
    help="Offer MCP's write tools (ingest_text, remove) at /mcp as well as its read tools.",
)
@setting_option("llm_url", metavar="URL")
@setting_option("llm_model", metavar="NAME")
@setting_option("llm_timeout", type=click.FloatRange(min=0.1), metavar="SECONDS")
@setting_option("llm_max_tokens", type=click.IntRange(min=1), metavar="N")
@device_option
@click.pass_context
def serve(
    ctx: click.Context,
    serve_host: str | None,
    serve_port: int | None,
    api_key: str | None,
    api_key_file: str | None,
    no_auth: bool,
    role: str,
    ingest_url: str | None,
    allowed_hosts: tuple[str, ...],
    cors: tuple[str, ...],
    allow_paths: tuple[str, ...],
    watch: tuple[str, ...],
    poll: bool,
    max_upload_mb: int,
    allow_reset: bool,
    sources_format: str,
    access_log: bool,
    mcp_write: bool,
    llm_url: str | None,
    llm_model: str | None,
    llm_timeout: float | None,
    llm_max_tokens: int | None,
    device: str | None,
) -> None:
    """Serve the knowledge base over HTTP: ragdb's API and an OpenAI-compatible
    chat model (base URL http://HOST:PORT/v1, model "ragdb")."""
    from pathlib import Path

    from ragdb.serve.config import ServeConfig, check_role, resolve_key
    from ragdb.serve.run import serve

    check_role(role, ingest_url, bool(watch), mcp_write)
    kb = _kb(
        ctx,
        serve_host=serve_host,
        serve_port=serve_port,
        api_key=api_key,
        api_key_file=api_key_file,
        llm_url=llm_url,
        llm_model=llm_model,
        llm_timeout=llm_timeout,
        llm_max_tokens=llm_max_tokens,
        device=device,
    )
    settings = kb.settings
    key, token_file = resolve_key(kb, settings.serve_host, no_auth, role)
    config = ServeConfig(
        host=settings.serve_host,
        port=settings.serve_port,
        api_key=key,
        allowed_hosts=allowed_hosts,
        cors=cors,
        allow_paths=tuple(Path(p) for p in allow_paths),
        max_upload_bytes=max_upload_mb * 2**20,
        allow_reset=allow_reset,
        watch=tuple(Path(p) for p in watch),
        poll=poll,
        sources_format=sources_format,
        access_log=access_log,
        mcp_write=mcp_write,
        role=role,
        ingest_url=ingest_url,
    )
    serve(kb, config, token_file)


@cli.command()
@click.option(
    "--write",
    is_flag=True,
    help="Also offer the tools that change the knowledge base (ingest_text, remove).",
)
@click.pass_context
def mcp(ctx: click.Context, write: bool) -> None:
    """Serve the knowledge base to an MCP client (an agent) over stdio: tools
    search, ask, list_sources and read_source. Uses the store's running
    ragdb serve when there is one, as other commands do."""
    from ragdb.mcp_server import build_server

    build_server(_open(ctx), write=write).run("stdio")


def main() -> None:
    cli(prog_name="ragdb")


if __name__ == "__main__":
    main()
