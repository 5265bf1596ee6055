"""Word documents and PowerPoint presentations written out as Markdown, within a budget.

For upstreams that cannot parse DOCX or PPTX (`VECTORGATE_CONVERT_TO_TEXT`). The parts
are read as workbooks are (uploads/ooxml.py: expat in bounded steps, the deadline
checked between them, no DOCTYPE, the XML read and the Markdown written capped), and
only text is kept:

- A document's body (word/document.xml) in order: each paragraph as a block separated
  by a blank line (`w:t` text, `w:tab` a tab, `w:br` a line break), `Title` and
  `Heading1`..`Heading6` paragraphs as `#`..`######` headings, tables as Markdown tables
  (the first row is the header; a cell's paragraphs are joined with `<br>`; a table
  inside a cell is flattened into that cell).
- A presentation's slides in presentation order (ppt/presentation.xml's `sldIdLst`),
  each as `## Slide N` and one line per non-empty paragraph (`a:t` text).

Content meant for readers that do not know newer markup (`mc:Fallback`) repeats what
came before it and is skipped.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from typing import BinaryIO

from vectorgate.uploads import ooxml
from vectorgate.uploads.ooxml import Handlers, PackageError, PackageReader, local, rels_path

# A paragraph, a table row or a slide's line is held in memory until it ends; the same
# bound as a workbook's row (~8 MiB at worst), far past any real paragraph.
MAX_BLOCK_CHARS = 2_000_000

# Every XML element costs a parser callback: this bounds the CPU of a package within
# every other cap to ~2 s, as for workbooks (measured: 2M elements of empty paragraphs,
# the costliest kind, in ~2.5 s). A 1,000-page document with heavy formatting has ~500k.
MAX_ELEMENTS = 2_000_000

# Slides listed in a presentation are kept in memory; PowerPoint decks have hundreds.
MAX_SLIDES = 10_000

_HEADING_LEVELS = {"Title": 1} | {f"Heading{n}": n for n in range(1, 7)}


class DocumentError(PackageError):
    """The document's content is not what a Word document holds (the caller's 415)."""


class PresentationError(PackageError):
    """The presentation's content is not what a presentation holds (the caller's 415)."""


def write_document_markdown(
    package: zipfile.ZipFile,
    filename: str,
    out: BinaryIO,
    *,
    max_output_bytes: int,
    max_xml_bytes: int,
) -> None:
    """Write the Word document `package`'s body to `out` as Markdown.

    Raises 413 (AppError) at a cap, DocumentError or whatever expat and zipfile raise
    for a file that cannot be read.
    """
    reader = PackageReader(
        package,
        filename,
        out,
        what="document",
        error=DocumentError,
        max_output_bytes=max_output_bytes,
        max_xml_bytes=max_xml_bytes,
    )
    _Document(reader).write()


def write_presentation_markdown(
    package: zipfile.ZipFile,
    filename: str,
    out: BinaryIO,
    *,
    max_output_bytes: int,
    max_xml_bytes: int,
) -> None:
    """Write the presentation `package`'s slides to `out` as Markdown, as
    `write_document_markdown` does for a document."""
    reader = PackageReader(
        package,
        filename,
        out,
        what="presentation",
        error=PresentationError,
        max_output_bytes=max_output_bytes,
        max_xml_bytes=max_xml_bytes,
    )
    _Presentation(reader).write()


class _Text:
    """Text being collected, within MAX_BLOCK_CHARS."""

    __slots__ = ("buffer", "chars", "level", "reader", "styled")

    def __init__(self, reader: PackageReader) -> None:
        self.reader = reader
        self.buffer = io.StringIO()  # amortised appends, ~4 bytes a character
        self.chars = 0
        self.level = 0  # heading level, 0 for body text
        self.styled = False  # the first pStyle is the paragraph's (a later one is history)

    def add(self, data: str) -> None:
        self.chars += len(data)
        if self.chars > MAX_BLOCK_CHARS:
            raise _too_long(self.reader, "a paragraph")
        self.buffer.write(data)

    def value(self) -> str:
        return self.buffer.getvalue()


def _too_long(reader: PackageReader, what: str) -> Exception:
    return reader.over(
        f"{what} holds more than {MAX_BLOCK_CHARS:,} characters of text",
        max_block_chars=MAX_BLOCK_CHARS,
    )


class _Elements:
    """The package's element count, against MAX_ELEMENTS, and the open ones, MAX_DEPTH."""

    __slots__ = ("count", "depth", "max_depth", "reader")

    def __init__(self, reader: PackageReader) -> None:
        self.reader = reader
        self.count = 0
        self.depth = 0
        self.max_depth = ooxml.MAX_DEPTH

    def too_many(self) -> Exception:
        if self.depth > self.max_depth:
            return self.reader.too_deep()
        return self.reader.over(
            f"the {self.reader.what} has more than {MAX_ELEMENTS:,} XML elements",
            max_elements=MAX_ELEMENTS,
        )


class _Document:
    """word/document.xml, written block by block as its paragraphs and tables end."""

    def __init__(self, reader: PackageReader) -> None:
        self.reader = reader
        self.elements = _Elements(reader)
        self.blocks = 0  # blocks written, each after a blank line
        self.paragraphs: list[_Text] = []  # open paragraphs, innermost last (text boxes)
        self.text: _Text | None = None  # where character data goes, if anywhere
        self.runs = 0  # open w:r
        self.tab_stops = 0  # open w:tabs (whose w:tab are tab stops, not tabs)
        self.fallback = 0  # open mc:Fallback
        self.tables = 0  # open w:tbl outside any paragraph; 1: the table being written
        self.flat_tables = 0  # open w:tbl inside a paragraph (a text box): text only
        self.width = 0  # the table's header width; 0 until its first row
        self.row: list[str] | None = None
        self.row_chars = 0
        self.cell: list[str] | None = None  # the cell's paragraphs

    def write(self) -> None:
        self.reader.parse(
            self.reader.main_part("word/document.xml"),
            Handlers(self.start, self.end, self.collect, counts_depth=True),
        )
        if not self.blocks:
            self.reader.emit("_(empty document)_\n")

    def start(self, name: str, attributes: dict[str, str]) -> None:
        elements = self.elements
        elements.count += 1
        elements.depth += 1
        if elements.count > MAX_ELEMENTS or elements.depth > elements.max_depth:
            raise elements.too_many()
        if ":" in name:
            name = name.rpartition(":")[2]
        if self.fallback:
            if name == "Fallback":
                self.fallback += 1
            return
        if name == "t":
            if self.runs and self.paragraphs:
                self.text = self.paragraphs[-1]
        elif name == "r":
            self.runs += 1
        elif name == "p":
            self.paragraphs.append(_Text(self.reader))
        elif name in ("tab", "ptab"):
            if self.runs and self.paragraphs and not self.tab_stops:
                self.paragraphs[-1].add("\t")
        elif name in ("br", "cr"):
            if self.runs and self.paragraphs:
                self.paragraphs[-1].add("\n")
        elif name == "pStyle":
            if self.paragraphs and not self.paragraphs[-1].styled:
                paragraph = self.paragraphs[-1]
                paragraph.styled = True
                style = next((v for k, v in attributes.items() if local(k) == "val"), "")
                paragraph.level = _HEADING_LEVELS.get(style, 0)
        elif name == "tabs":
            self.tab_stops += 1
        elif name == "tbl":
            if self.paragraphs or self.flat_tables:
                self.flat_tables += 1
            else:
                self.tables += 1
                if self.tables == 1:
                    self.width = 0
        elif name == "tr":
            if self._in_table():
                self.row = []
                self.row_chars = 0
        elif name == "tc":
            if self._in_table() and self.row is not None:
                self.cell = []
        elif name == "Fallback":
            self.fallback = 1

    def end(self, name: str) -> None:
        self.elements.depth -= 1
        if ":" in name:
            name = name.rpartition(":")[2]
        if self.fallback:
            if name == "Fallback":
                self.fallback -= 1
            return
        if name == "t":
            self.text = None
        elif name == "r":
            self.runs -= 1
        elif name == "p":
            self._end_paragraph(self.paragraphs.pop())
        elif name == "tabs":
            self.tab_stops -= 1
        elif name == "tc":
            if self._in_table() and self.cell is not None and self.row is not None:
                text = "<br>".join(self.cell).replace("\n", "<br>").replace("|", "\\|")
                self.row.append(text)
                self.cell = None
        elif name == "tr":
            if self._in_table() and self.row is not None:
                self._end_row(self.row)
                self.row = None
        elif name == "tbl":
            if self.flat_tables:
                self.flat_tables -= 1
            else:
                self.tables -= 1
                if not self.tables and self.width:
                    self.blocks += 1

    def collect(self, data: str) -> None:
        if self.text is not None:
            self.text.add(data)

    def _in_table(self) -> bool:
        # Rows and cells of the outermost table only, not of one inside a cell.
        return self.tables == 1 and not self.flat_tables and not self.paragraphs

    def _end_paragraph(self, paragraph: _Text) -> None:
        self.text = None
        text = paragraph.value().rstrip("\n")  # a break that ends a paragraph shows nothing
        if not text.strip():
            return
        if self.paragraphs:  # a text box's paragraph, read where the box is anchored
            outer = self.paragraphs[-1]
            outer.add(f"\n{text}\n" if outer.chars else f"{text}\n")
        elif self.cell is not None:
            self.row_chars += len(text)
            if self.row_chars > MAX_BLOCK_CHARS:
                raise _too_long(self.reader, "a table row")
            self.cell.append(text)
        elif not self.tables:
            if self.blocks:
                self.reader.emit("\n")
            if paragraph.level:
                text = f"{'#' * paragraph.level} {text.replace(chr(10), ' ')}"
            self.reader.emit(f"{text}\n")
            self.blocks += 1
        # Anything else is text a table holds outside its cells: not valid, not written.

    def _end_row(self, row: list[str]) -> None:
        if not row:
            return
        emit = self.reader.emit
        if not self.width:
            if self.blocks:
                emit("\n")
            self.width = len(row)
            emit(f"| {' | '.join(row)} |\n")
            emit(f"| {' | '.join(['---'] * self.width)} |\n")
            return
        row += [""] * (self.width - len(row))
        emit(f"| {' | '.join(row)} |\n")


class _Presentation:
    """The slides, in presentation order, each written line by line as it is parsed."""

    def __init__(self, reader: PackageReader) -> None:
        self.reader = reader
        self.elements = _Elements(reader)
        self.fallback = 0
        self.depth = 0  # open a:p (they do not nest; a crafted file may)
        self.paragraph: _Text | None = None
        self.collecting = False

    def write(self) -> None:
        reader = self.reader
        main = reader.main_part("ppt/presentation.xml")
        relationships = reader.relationships(rels_path(main), posixpath.dirname(main))
        for number, relationship_id in enumerate(self._slide_list(main), 1):
            if relationship_id not in relationships:
                raise PresentationError(f"slide {number} has no relationship")
            part = relationships[relationship_id][1]
            if number > 1:
                reader.emit("\n")
            reader.emit(f"## Slide {number}\n\n")
            if part in reader.names:  # a missing slide is an empty one
                reader.parse(part, Handlers(self.start, self.end, self.collect, counts_depth=True))
        if not reader.output_bytes:
            reader.emit("_(empty presentation)_\n")

    def _slide_list(self, part: str) -> list[str]:
        """The relationship ids of the presentation's slides, in order."""
        slides: list[str] = []
        root: list[str] = []

        def start(name: str, attributes: dict[str, str]) -> None:
            self.elements.count += 1
            self.elements.depth += 1
            if self.elements.count > MAX_ELEMENTS or self.elements.depth > self.elements.max_depth:
                raise self.elements.too_many()
            name = local(name)
            if not root:
                root.append(name)
                if name != "presentation":
                    raise PresentationError(
                        f"the main part is a <{name[:40]}>, not a <presentation>"
                    )
            elif name == "sldId":
                if len(slides) >= MAX_SLIDES:
                    raise self.reader.over(
                        f"the presentation has more than {MAX_SLIDES:,} slides",
                        max_slides=MAX_SLIDES,
                    )
                # `r:id` names the relationship; the plain `id` is a number.
                relationship_id = next(
                    (value for key, value in attributes.items() if key.endswith(":id")), None
                )
                if relationship_id is None:
                    raise PresentationError("a slide without a relationship id")
                slides.append(relationship_id)

        def end(_: str) -> None:
            self.elements.depth -= 1

        self.reader.parse(part, Handlers(start, end, counts_depth=True))
        return slides

    def start(self, name: str, _: dict[str, str]) -> None:
        elements = self.elements
        elements.count += 1
        elements.depth += 1
        if elements.count > MAX_ELEMENTS or elements.depth > elements.max_depth:
            raise elements.too_many()
        if ":" in name:
            name = name.rpartition(":")[2]
        if self.fallback:
            if name == "Fallback":
                self.fallback += 1
            return
        if name == "t":
            self.collecting = self.paragraph is not None
        elif name == "p":
            self.depth += 1
            if self.depth == 1:
                self.paragraph = _Text(self.reader)
        elif name == "br":
            if self.paragraph is not None:
                self.paragraph.add("\n")
        elif name == "Fallback":
            self.fallback = 1

    def end(self, name: str) -> None:
        self.elements.depth -= 1
        if ":" in name:
            name = name.rpartition(":")[2]
        if self.fallback:
            if name == "Fallback":
                self.fallback -= 1
            return
        if name == "t":
            self.collecting = False
        elif name == "p":
            self.depth -= 1
            if not self.depth and self.paragraph is not None:
                text = self.paragraph.value()
                self.paragraph = None
                self.collecting = False
                if text.strip():
                    self.reader.emit(f"{text}\n")

    def collect(self, data: str) -> None:
        if self.collecting and self.paragraph is not None:
            self.paragraph.add(data)
