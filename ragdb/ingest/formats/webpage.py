"""A web page's main text: trafilatura takes out navigation, footers and other
boilerplate and gives the rest as Markdown (headings kept, so chunks are
located by them); its title and author become metadata. A page it finds no
main text in is read whole, as an HTML file is."""

from __future__ import annotations

from ragdb.ingest.inputs import Document


def read_page(source: str, html: str) -> Document | None:
    """The page's main text, or None when trafilatura finds none."""
    import trafilatura
    from trafilatura.metadata import extract_metadata

    text = trafilatura.extract(
        html,
        url=source,
        output_format="markdown",
        include_comments=False,
        include_tables=True,
        favor_recall=True,
    )
    if not text or not text.strip():
        return None
    meta = extract_metadata(html, default_url=source)
    doc = Document(source, text, "html", markdown=True)
    if meta is not None:
        doc.title = meta.title or None
        if meta.author:
            doc.meta["author"] = str(meta.author)
    return doc
