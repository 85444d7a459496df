"""Web pages as sources: one URL fetched, or a site crawled from one.

Fetching happens where the store is (a CLI's own process, or ``ragdb serve``
for a client), since a re-ingest sends the validators stored with each page
(ETag, Last-Modified) and a 304 costs nothing. A page is stored under its URL
(after redirects); pages found by a crawl carry the URL it started at as their
origin, so ``--prune`` removes the ones a later crawl no longer reaches.

What may pass (a timeout, a refused connection, a 5xx) keeps the stored
version, ``--prune`` or not; a 404 or 410 means the page is gone. A crawl
that could not see the whole site (a failure, the page limit) prunes nothing.
"""

from __future__ import annotations

import collections
import dataclasses
import time
import urllib.robotparser
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urljoin, urlsplit

from ragdb.errors import UsageError
from ragdb.ingest.inputs import Fetched, Input, check_ocr
from ragdb.version import __version__

if TYPE_CHECKING:
    import httpx

    from ragdb.store.records import SourceInfo


USER_AGENT = f"ragdb/{__version__}"


# A page larger than this is not one to read whole (a stream that never ends).
MAX_PAGE_BYTES = 32 * 2**20


MAX_REDIRECTS = 5


# A crawl's pages are held until they are stored: it stops (pruning nothing)
# once their bytes pass this.
MAX_CRAWL_BYTES = 512 * 2**20


# Content types that a crawl reads links from.
HTML_TYPES = ("text/html", "application/xhtml+xml")


# The kind a content type names, where the bytes alone may not tell.
KIND_BY_TYPE = {"text/html": "html", "application/xhtml+xml": "html", "text/markdown": "markdown"}


Warn = Callable[[str], None]


def is_url(text: str) -> bool:
    """Whether ``text`` names a web page (http or https) rather than a path."""
    return text.lower().startswith(("http://", "https://"))


def check_url(url: str) -> str:
    """``url`` without its fragment, or a :class:`UsageError` saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(f"not a web address (http:// or https://, with a host): {url!r}")
    if any(ch.isspace() for ch in url) or "\0" in url:
        raise UsageError(f"a web address holds no spaces or control characters: {url!r}")
    return urldefrag(url).url


@dataclasses.dataclass(frozen=True)
class WebTarget:
    """A URL to ingest: the page alone (``depth`` 0), or a crawl following
    same-site links ``depth`` steps, at most ``max_pages`` pages, waiting
    ``delay`` seconds between requests (longer if robots.txt asks)."""

    url: str
    depth: int = 0
    max_pages: int = 1
    delay: float = 1.0
    timeout: float = 20.0
    ocr: str = "on"  # as for files (see ragdb.ingest.inputs.OCR_MODES)
    # The user's metadata (``ingest --meta``), on every page's chunks.
    meta: tuple[tuple[str, str | int | float | bool], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", check_url(self.url))
        try:
            check_ocr(self.ocr)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not all(isinstance(v, (str, int, float, bool)) for _, v in self.meta):
            raise UsageError("metadata values are strings, numbers or booleans")
        if self.depth < 0 or self.max_pages < 1 or self.delay < 0 or self.timeout <= 0:
            raise UsageError(
                "a crawl's depth and delay are 0 or more, its page limit and timeout above 0"
            )

    @property
    def crawl(self) -> bool:
        """Whether links are followed (and robots.txt honoured)."""
        return self.depth > 0

    def to_wire(self) -> dict[str, Any]:
        """The target as JSON (how a CLI hands it to a server)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> WebTarget:
        """The target :meth:`to_wire` described (a UsageError if not one)."""
        try:
            return cls(
                url=str(data["url"]),
                depth=int(data.get("depth", 0)),
                max_pages=int(data.get("max_pages", 1)),
                delay=float(data.get("delay", 1.0)),
                timeout=float(data.get("timeout", 20.0)),
                ocr=str(data.get("ocr", "on")),
                meta=tuple((str(k), v) for k, v in data.get("meta") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"not a web target ({{url, depth, ...}}): {exc}") from None


@dataclasses.dataclass(frozen=True)
class WebOptions:
    """How URLs given to an ingest are fetched: the page alone (``depth`` 0),
    or a crawl (see :class:`WebTarget`)."""

    depth: int = 0
    max_pages: int = 50
    delay: float = 1.0
    timeout: float = 20.0

    def target(
        self, url: str, ocr: str = "on", meta: tuple[tuple[str, Any], ...] = ()
    ) -> WebTarget:
        """What to fetch for ``url`` (``meta`` on its pages' chunks)."""
        return WebTarget(
            url,
            depth=self.depth,
            max_pages=self.max_pages if self.depth else 1,
            delay=self.delay,
            timeout=self.timeout,
            ocr=ocr,
            meta=meta,
        )


@dataclasses.dataclass
class Gathered:
    """What fetching the targets gave: one input per page tried, and the crawls
    that saw their whole site (only those may prune)."""

    inputs: list[Input] = dataclasses.field(default_factory=list)
    whole: set[str] = dataclasses.field(default_factory=set)


def gather(
    targets: Sequence[WebTarget], stored: Mapping[str, SourceInfo], warn: Warn | None = None
) -> Gathered:
    """Fetch every target's pages; ``stored`` gives the validators of pages
    already stored, for conditional requests."""
    import httpx

    out = Gathered()
    for target in targets:
        with httpx.Client(
            timeout=target.timeout,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            headers={"User-Agent": USER_AGENT},
        ) as client:
            crawl = _Crawl(client, target, stored, warn)
            out.inputs += crawl.run()
            if target.crawl and crawl.whole:
                out.whole.add(target.url)
    return out


def _site(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class _Crawl:
    """One target's pages, breadth first."""

    def __init__(
        self,
        client: httpx.Client,
        target: WebTarget,
        stored: Mapping[str, SourceInfo],
        warn: Warn | None,
    ) -> None:
        self.client, self.target, self.stored = client, target, stored
        self.ocr, self.warn = target.ocr, warn
        self.origin = target.url if target.crawl else None
        self.robots: _Robots | None = None
        self.whole = True
        self.last_request = 0.0

    def run(self) -> list[Input]:
        """Every page tried, as an input (a failure as a reason why), each once."""
        queue = collections.deque([(self.target.url, 0)])
        seen = {self.target.url}
        site: tuple[str, str] | None = None
        inputs: dict[str, Input] = {}
        held = 0
        while queue:
            why = None
            if len(inputs) >= self.target.max_pages:
                why = f"{self.target.max_pages} pages (--max-pages)"
            elif held > MAX_CRAWL_BYTES:
                why = f"{MAX_CRAWL_BYTES // 2**20} MB of pages"
            if why is not None:
                self.whole = False
                self._say(f"{self.target.url}: stopped at {why}; nothing of this crawl is pruned")
                break
            url, depth = queue.popleft()
            inp, links = self.page(url, depth)
            seen.add(inp.source)  # where a redirect led
            inputs.setdefault(inp.source, inp)
            held += len(inp.data or b"")
            site = site or _site(inp.source)  # the start page's, after its redirects
            for link in links:
                if link not in seen and _site(link) == site:
                    seen.add(link)
                    queue.append((link, depth + 1))
        return list(inputs.values())

    def page(self, url: str, depth: int) -> tuple[Input, list[str]]:
        """One page as an input (under its URL after redirects), and the links
        to follow from it."""
        if self.target.crawl and not self._allowed(url):
            return self._failed(url, "disallowed by robots.txt", transient=False), []
        # A 304 carries no links: a crawl asks conditionally only where it stops.
        known = self.stored.get(url) if depth == self.target.depth else None
        try:
            reply = self._get(url, known)
        except _FetchError as exc:
            return self._failed(url, str(exc), exc.transient), []
        fetched = Fetched(
            etag=reply.headers.get("etag"),
            last_modified=reply.headers.get("last-modified"),
            not_modified=reply.status == 304,
        )
        ctype = reply.headers.get("content-type", "").split(";")[0].strip().lower()
        inp = Input(
            source=url if reply.status == 304 else reply.url,
            data=None if reply.status == 304 else reply.body,
            kind_hint=KIND_BY_TYPE.get(ctype),
            origin=self.origin,
            fetched=fetched,
            ocr=self.ocr,
            meta=self.target.meta,
        )
        follow = depth < self.target.depth and ctype in HTML_TYPES
        return inp, links_of(reply.body, reply.url) if follow else []

    def _get(self, url: str, known: SourceInfo | None) -> _Reply:
        """The reply to GET ``url`` (bounded, paced), or a :class:`_FetchError`."""
        import httpx

        headers = {}
        if known is not None and known.etag:
            headers["If-None-Match"] = known.etag
        if known is not None and known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        self._pace()
        try:
            with self.client.stream("GET", url, headers=headers) as resp:
                status, final = resp.status_code, str(resp.url)
                if status not in (200, 203, 304):
                    reason = f"HTTP {status} {resp.reason_phrase}".strip()
                    # 404 and 410 say the page is gone; 5xx, 429, 403... may pass.
                    raise _FetchError(reason, status not in (404, 410))
                body = _bounded(resp.iter_bytes())
        except httpx.TimeoutException:
            raise _FetchError(f"timed out after {self.target.timeout:g}s", True) from None
        except httpx.TooManyRedirects:
            raise _FetchError(f"more than {MAX_REDIRECTS} redirects", False) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise _FetchError(f"cannot fetch: {exc or type(exc).__name__}", True) from None
        finally:
            self.last_request = time.monotonic()
        return _Reply(check_url(final), status, resp.headers, body)

    def _pace(self) -> None:
        """Wait out the delay since the last request (robots.txt's, if longer)."""
        delay = self.target.delay if self.target.crawl else 0.0
        if self.robots is not None:
            delay = max(delay, self.robots.delay)
        wait = self.last_request + delay - time.monotonic()
        if self.last_request and wait > 0:
            time.sleep(wait)

    def _allowed(self, url: str) -> bool:
        if self.robots is None:
            self._pace()
            self.robots = _Robots(self.client, url)
            self.last_request = time.monotonic()
            if self.robots.note:
                self._say(f"{self.target.url}: {self.robots.note}")
        return self.robots.allowed(url)

    def _failed(self, url: str, reason: str, transient: bool) -> Input:
        if transient and self.whole and self.target.crawl:
            self._say(
                f"{self.target.url}: {url} failed ({reason}), so what lies past it is "
                "unknown: nothing of this crawl is pruned"
            )
        if transient:
            self.whole = False
        return Input(
            source=url,
            unreadable=reason,
            origin=self.origin,
            fetched=Fetched(transient=transient),
            ocr=self.ocr,
        )

    def _say(self, message: str) -> None:
        if self.warn:
            self.warn(message)


@dataclasses.dataclass
class _Reply:
    url: str  # after redirects
    status: int
    headers: httpx.Headers
    body: bytes


class _FetchError(Exception):
    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


def _bounded(chunks: Iterator[bytes]) -> bytes:
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > MAX_PAGE_BYTES:
            raise _FetchError(f"larger than {MAX_PAGE_BYTES // 2**20} MB", False)
    return bytes(out)


class _Robots:
    """A site's robots.txt, read once per crawl. Missing (4xx): all allowed;
    unreachable or failing (5xx): nothing is, as RFC 9309 asks."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        import httpx

        self.parser = urllib.robotparser.RobotFileParser()
        self.note: str | None = None
        robots_url = urljoin(url, "/robots.txt")
        try:
            resp = client.get(robots_url)
            status, text = resp.status_code, resp.text[:500_000]
        except httpx.HTTPError as exc:
            status, text = 0, ""
            self.note = f"robots.txt unreachable ({type(exc).__name__}): nothing crawled"
        if status >= 500:
            self.note = f"robots.txt answered HTTP {status}: nothing crawled"
        if status == 200:
            self.parser.parse(text.splitlines())
        elif 400 <= status < 500:
            self.parser.parse([])  # no rules: everything allowed
        else:
            self.parser.parse(["User-agent: *", "Disallow: /"])
        self.delay = float(self.parser.crawl_delay(USER_AGENT) or 0)

    def allowed(self, url: str) -> bool:
        return self.parser.can_fetch(USER_AGENT, url)


def links_of(html: bytes, base: str) -> list[str]:
    """The http(s) links of an HTML page, absolute and without fragments, in
    page order, each once."""
    import lxml.html
    from lxml.etree import ParserError

    try:
        root = lxml.html.document_fromstring(html, base_url=base)
    except (ParserError, ValueError):
        return []
    out: dict[str, None] = {}
    for element in root.iter("a"):
        href = element.get("href")
        if not href or "nofollow" in element.get("rel", "").lower().split():
            continue
        url = urldefrag(urljoin(base, href.strip())).url
        if is_url(url):
            out.setdefault(url, None)
    return list(out)
