"""The parts of an Office package (OOXML) read as streams of XML, within a budget.

Shared by the conversions of workbooks (uploads/xlsx.py) and of documents and
presentations (uploads/office_text.py). Each part is fed to expat in bounded steps with
the deadline checked between them; a DOCTYPE is refused, so no entity can expand; the
XML read and the text written are capped, and every refusal names the file.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Callable
from typing import BinaryIO
from xml.parsers import expat

from vectorgate.errors import AppError, ErrorCode
from vectorgate.uploads.work import check_deadline

# An XML tag or attribute longer than this is refused: expat keeps an unfinished token
# in memory, and no part of a real Office file has one this long.
MAX_XML_TOKEN_BYTES = 1024 * 1024

# expat keeps every open element: 2M nested ones took 255 MiB, and a 29 KB workbook
# nesting 4M took 437 MiB. Real parts nest a few dozen deep (tables in tables, text
# boxes); this is the bound JSON uploads have too.
MAX_DEPTH = 1_000

# Relationships of one part are kept in memory while the package is read; a real
# workbook or presentation has one per sheet or slide, plus a few.
MAX_RELATIONSHIPS = 20_000

# Inflated XML is parsed in steps of this size, with the deadline checked between them.
STEP = 64 * 1024

REL_OFFICE_DOCUMENT = "/officeDocument"


class PackageError(Exception):
    """The package's content is not what its kind holds (the caller's 415)."""


def over_budget(filename: str, problem: str, **details: object) -> AppError:
    """The 413 for a file that reached one of the conversion's caps."""
    return AppError(
        413,
        ErrorCode.FILE_TOO_LARGE,
        f"{filename}: {problem}",
        details={"filename": filename, **details},
    )


def _nothing(*_: object) -> None:
    return None


class Handlers:
    """What one part's parse does with its elements (qualified names) and text.

    Unless `counts_depth` (handlers on a hot path count open elements themselves, against
    MAX_DEPTH), the parse counts them around `start` and `end`.
    """

    def __init__(
        self,
        start: Callable[[str, dict[str, str]], None] = _nothing,
        end: Callable[[str], None] = _nothing,
        text: Callable[[str], None] = _nothing,
        *,
        counts_depth: bool = False,
    ) -> None:
        self.start = start
        self.end = end
        self.text = text
        self.counts_depth = counts_depth


def local(name: str) -> str:
    """`t` for `w:t`: no namespace processing, so prefixes are dropped by hand."""
    return name.rpartition(":")[2] if ":" in name else name


def rels_path(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", f"{name}.rels")


class PackageReader:
    """One package's parts parsed, and the text written from them, within the caps.

    `what` names the package in messages ("workbook", "document"); `error` is the
    PackageError subclass raised for content its kind does not hold.
    """

    def __init__(
        self,
        package: zipfile.ZipFile,
        filename: str,
        out: BinaryIO,
        *,
        what: str,
        error: type[PackageError],
        max_output_bytes: int,
        max_xml_bytes: int,
    ) -> None:
        self.package = package
        self.names = set(package.namelist())
        self.filename = filename
        self.out = out
        self.what = what
        self.error = error
        self.max_output_bytes = max_output_bytes
        self.max_xml_bytes = max_xml_bytes
        self.output_bytes = 0
        self.xml_bytes = 0

    def over(self, problem: str, **details: object) -> AppError:
        return over_budget(self.filename, problem, **details)

    def too_deep(self) -> AppError:
        return self.over(
            f"the {self.what} nests XML elements more than {MAX_DEPTH:,} deep",
            max_depth=MAX_DEPTH,
        )

    def emit(self, text: str) -> None:
        data = text.encode()
        self.output_bytes += len(data)
        if self.output_bytes > self.max_output_bytes:
            raise self.over(
                f"converts to more than {self.max_output_bytes // (1024 * 1024)} MB of text",
                max_output_bytes=self.max_output_bytes,
            )
        self.out.write(data)

    def parse(self, part: str, handlers: Handlers) -> None:
        """Feed `part` to a fresh expat parser in steps, within the package's budgets.

        No namespace processing (it costs a third of the time): handlers get qualified
        names and compare local ones. No DOCTYPE, so no entities either.
        """
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.buffer_size = STEP
        if handlers.counts_depth:
            parser.StartElementHandler = handlers.start
            parser.EndElementHandler = handlers.end
        else:
            parser.StartElementHandler, parser.EndElementHandler = self._depth_counted(handlers)
        parser.CharacterDataHandler = handlers.text
        parser.StartDoctypeDeclHandler = self._refuse_doctype
        parser.EntityDeclHandler = self._refuse_doctype
        fed = 0
        with self.package.open(part) as source:
            while step := source.read(STEP):
                check_deadline()
                self.xml_bytes += len(step)
                if self.xml_bytes > self.max_xml_bytes:
                    raise self.over(
                        f"the {self.what}'s XML is more than "
                        f"{self.max_xml_bytes // (1024 * 1024)} MB",
                        max_xml_bytes=self.max_xml_bytes,
                    )
                parser.Parse(step, False)
                fed += len(step)
                # Where expat stopped is the start of the token it has not finished.
                if fed - parser.CurrentByteIndex > MAX_XML_TOKEN_BYTES:
                    raise self.over(
                        f"{part} holds an XML token over {MAX_XML_TOKEN_BYTES // 1024} KB",
                        max_xml_token_bytes=MAX_XML_TOKEN_BYTES,
                    )
            parser.Parse(b"", True)

    def _depth_counted(
        self, handlers: Handlers
    ) -> tuple[Callable[[str, dict[str, str]], None], Callable[[str], None]]:
        start, end = handlers.start, handlers.end
        depth = 0
        max_depth = MAX_DEPTH

        def counted_start(name: str, attributes: dict[str, str]) -> None:
            nonlocal depth
            depth += 1
            if depth > max_depth:
                raise self.too_deep()
            start(name, attributes)

        def counted_end(name: str) -> None:
            nonlocal depth
            depth -= 1
            end(name)

        return counted_start, counted_end

    def relationships(self, part: str, base: str) -> dict[str, tuple[str, str]]:
        """Relationship id -> (type, part name) of the internal targets in `part`."""
        found: dict[str, tuple[str, str]] = {}
        if part not in self.names:
            return found

        def start(name: str, attributes: dict[str, str]) -> None:
            if local(name) != "Relationship" or attributes.get("TargetMode") == "External":
                return
            if len(found) >= MAX_RELATIONSHIPS:
                raise self.over(
                    f"{part} lists more than {MAX_RELATIONSHIPS:,} relationships",
                    max_relationships=MAX_RELATIONSHIPS,
                )
            target = attributes.get("Target", "")
            if target.startswith("/"):
                resolved = target[1:]
            else:
                resolved = posixpath.normpath(posixpath.join(base, target))
            found[attributes.get("Id", "")] = (attributes.get("Type", ""), resolved)

        self.parse(part, Handlers(start))
        return found

    def main_part(self, default: str) -> str:
        """The package's main part as its root relationships name it, else `default`."""
        main = default
        for type_, target in self.relationships("_rels/.rels", "").values():
            if type_.endswith(REL_OFFICE_DOCUMENT):
                main = target
        if main not in self.names:
            raise self.error(f"no {self.what} part")
        return main

    def _refuse_doctype(self, *_: object) -> None:
        raise self.error(f"a DOCTYPE (not allowed in a {self.what})")
