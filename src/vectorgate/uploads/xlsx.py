"""A workbook read as a stream of XML, written out as Markdown, within a budget.

openpyxl (even read-only) pads every gap between rows (a row numbered 10^15 never
finishes), pads columns to the widest cell, and keeps every shared string and whole cell
texts in memory, so a 2 KB file can hold a worker forever and a 500 KB one can take
gigabytes. Here the parts are read with expat in bounded steps: only cells that exist
are materialised, missing rows are never padded (blank rows are skipped anyway), and the
work stops with a 413 naming the file and the cap as soon as one of the caps below is
reached. Each cap was measured on its worst input (a workbook built to pass it by one,
see tests/uploads/workbooks.py): at most ~2 s of CPU and ~52 MiB of memory.

The Markdown is what the openpyxl-based converter wrote: one `## <sheet>` section per
worksheet, a table whose header is the first non-blank row, values as openpyxl's
`data_only` read gives them (numbers formatted as dates become datetimes).
"""

from __future__ import annotations

import datetime
import posixpath
import zipfile
from typing import Any, BinaryIO

from openpyxl.styles.numbers import (
    BUILTIN_FORMATS,
    is_date_format,
    is_timedelta_format,
)
from openpyxl.utils.datetime import CALENDAR_MAC_1904, WINDOWS_EPOCH, from_excel, from_ISO8601

from vectorgate.errors import AppError
from vectorgate.uploads import ooxml
from vectorgate.uploads.ooxml import (
    Handlers,
    PackageError,
    PackageReader,
    local,
    over_budget,
    rels_path,
)

# Excel's own sheet size. Rows count the <row> elements of the whole workbook (an empty
# one costs a parser callback too); 1M empty rows parse in ~1.2 s of CPU.
MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384  # column XFD, Excel's last

# Cells of the whole workbook: each <c> element read plus each empty cell written to pad
# a row (gaps before a cell, short rows padded to the header's width). 2M empty <c/>
# take ~1.8 s of CPU, 2M cells of XFD padding ~0.1 s; memory is one row at a time.
MAX_CELLS = 2_000_000

# Excel's own limit on the text of one cell, for inline and shared strings alike.
MAX_CELL_CHARS = 32_767

# Text one row may hold before it is written: 16,384 cells of 32,767 characters would be
# 537M characters in memory. 2M characters is ~8 MiB at worst, and any real row.
MAX_ROW_CHARS = 2_000_000

# Shared strings are all kept in memory (any cell may use any of them). Measured at the
# caps: 500k short strings take ~28 MiB and ~1.2 s; 10M characters ~20 MiB as ASCII and
# ~52 MiB as emoji (4 bytes each in a Python str), in ~1 s.
MAX_SHARED_STRINGS = 500_000
MAX_SHARED_STRING_CHARS = 10_000_000

# Sheets and cell styles are kept in memory while the workbook is read (relationships
# too, capped in uploads/ooxml.py). Excel allows about 64,000 cell formats; more sheets
# than this is no real workbook.
MAX_SHEETS = 4_096
MAX_STYLES = 65_536

# Excel's limit on a number format's length; longer ones are not dates (and not scanned).
_MAX_FORMAT_CHARS = 255

_REL_STRINGS = "/sharedStrings"
_REL_STYLES = "/styles"


class WorkbookError(PackageError):
    """The workbook's content is not what a workbook holds (the caller's 415)."""


def write_markdown(
    package: zipfile.ZipFile,
    filename: str,
    out: BinaryIO,
    *,
    max_output_bytes: int,
    max_xml_bytes: int,
) -> None:
    """Write `package`'s worksheets to `out` as Markdown.

    Raises 413 (AppError) at a cap: more than `max_output_bytes` of Markdown, more than
    `max_xml_bytes` of XML read (a sheet listed many times is read many times), or one of
    this module's caps. Raises WorkbookError, or whatever expat and zipfile raise, for a
    file that cannot be read.
    """
    _Workbook(package, filename, out, max_output_bytes, max_xml_bytes).write()


class _Budget:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.rows = 0
        self.cells = 0

    def over(self, problem: str, **details: object) -> AppError:
        return over_budget(self.filename, problem, **details)

    def add_cells(self, n: int) -> None:
        self.cells += n
        if self.cells > MAX_CELLS:
            raise self.too_many_cells()

    def too_many_cells(self) -> AppError:
        return self.over(
            f"the workbook has more than {MAX_CELLS:,} cells (counting empty cells that pad rows)",
            max_cells=MAX_CELLS,
        )


class _Workbook:
    def __init__(
        self,
        package: zipfile.ZipFile,
        filename: str,
        out: BinaryIO,
        max_output_bytes: int,
        max_xml_bytes: int,
    ) -> None:
        self.reader = PackageReader(
            package,
            filename,
            out,
            what="workbook",
            error=WorkbookError,
            max_output_bytes=max_output_bytes,
            max_xml_bytes=max_xml_bytes,
        )
        self.names = self.reader.names
        self.budget = _Budget(filename)

    def write(self) -> None:
        workbook_part = self.reader.main_part("xl/workbook.xml")
        base = posixpath.dirname(workbook_part)
        relationships = self.reader.relationships(rels_path(workbook_part), base)
        sheets, epoch = self._sheets(workbook_part)
        strings_part = _part_of_type(relationships, _REL_STRINGS, f"{base}/sharedStrings.xml")
        styles_part = _part_of_type(relationships, _REL_STYLES, f"{base}/styles.xml")
        strings = self._shared_strings(strings_part) if strings_part in self.names else []
        date_styles, timedelta_styles = (
            self._date_styles(styles_part) if styles_part in self.names else (set(), set())
        )
        written = 0
        for title, relationship_id in sheets:
            if relationship_id not in relationships:
                raise WorkbookError(f"sheet {title!r} has no relationship")
            type_, part = relationships[relationship_id]
            if "chartsheet" in type_ or part not in self.names:
                continue  # as openpyxl: chartsheets and missing parts are not worksheets
            if written:
                self.reader.emit("\n")
            self.reader.emit(f"## {title}\n\n")
            sheet = _Sheet(self, strings, date_styles, timedelta_styles, epoch)
            self.reader.parse(part, sheet.handlers())
            if not sheet.width:
                self.reader.emit("_(empty sheet)_\n")
            written += 1

    def _sheets(self, part: str) -> tuple[list[tuple[str, str]], datetime.datetime]:
        """The workbook's (sheet title, relationship id) in order, and its date epoch."""
        sheets: list[tuple[str, str]] = []
        epoch = [WINDOWS_EPOCH]
        root: list[str] = []

        def start(name: str, attributes: dict[str, str]) -> None:
            name = local(name)
            if not root:
                root.append(name)
                if name != "workbook":
                    raise WorkbookError(f"the main part is a <{name[:40]}>, not a <workbook>")
            elif name == "sheet":
                if len(sheets) >= MAX_SHEETS:
                    raise self.budget.over(
                        f"the workbook has more than {MAX_SHEETS:,} sheets", max_sheets=MAX_SHEETS
                    )
                relationship_id = next(
                    (value for key, value in attributes.items() if local(key) == "id"), None
                )
                if relationship_id is None:
                    raise WorkbookError("a sheet without a relationship id")
                sheets.append((attributes.get("name", ""), relationship_id))
            elif name == "workbookPr" and attributes.get("date1904") in ("1", "true"):
                epoch[0] = CALENDAR_MAC_1904

        self.reader.parse(part, Handlers(start))
        return sheets, epoch[0]

    def _shared_strings(self, part: str) -> list[str]:
        strings: list[str] = []
        pieces: list[str] = []
        state = {"phonetic": 0, "collect": False, "chars": 0, "total": 0}

        def start(name: str, _: dict[str, str]) -> None:
            name = local(name)
            if name == "si":
                if len(strings) >= MAX_SHARED_STRINGS:
                    raise self.budget.over(
                        f"the workbook has more than {MAX_SHARED_STRINGS:,} shared strings",
                        max_shared_strings=MAX_SHARED_STRINGS,
                    )
                pieces.clear()
                state["chars"] = 0
            elif name == "rPh":
                state["phonetic"] += 1
            elif name == "t" and not state["phonetic"]:
                state["collect"] = True

        def end(name: str) -> None:
            name = local(name)
            if name == "t":
                state["collect"] = False
            elif name == "rPh":
                state["phonetic"] -= 1
            elif name == "si":
                # openpyxl's reading drops the escape of a literal "_x" this way.
                strings.append("".join(pieces).replace("x005F_", ""))

        def text(data: str) -> None:
            if not state["collect"]:
                return
            state["chars"] += len(data)
            state["total"] += len(data)
            if state["chars"] > MAX_CELL_CHARS:
                raise self.budget.over(
                    f"a shared string holds more than {MAX_CELL_CHARS:,} characters "
                    "(Excel's limit for a cell)",
                    max_cell_chars=MAX_CELL_CHARS,
                )
            if state["total"] > MAX_SHARED_STRING_CHARS:
                raise self.budget.over(
                    f"the workbook's shared strings hold more than "
                    f"{MAX_SHARED_STRING_CHARS:,} characters",
                    max_shared_string_chars=MAX_SHARED_STRING_CHARS,
                )
            pieces.append(data)

        self.reader.parse(part, Handlers(start, end, text))
        return strings

    def _date_styles(self, part: str) -> tuple[set[int], set[int]]:
        """Indexes of the cell styles whose number format shows a date, or a duration."""
        custom: dict[int, str] = {}
        formats: list[str] = []
        in_cell_styles = [False]

        def start(name: str, attributes: dict[str, str]) -> None:
            name = local(name)
            if name == "numFmt":
                if len(custom) >= MAX_STYLES:
                    raise self._too_many_styles()
                custom[int(attributes.get("numFmtId", "0"))] = attributes.get("formatCode", "")
            elif name == "cellXfs":
                in_cell_styles[0] = True
            elif name == "xf" and in_cell_styles[0]:
                if len(formats) >= MAX_STYLES:
                    raise self._too_many_styles()
                number_format = int(attributes.get("numFmtId", "0"))
                formats.append(custom.get(number_format) or BUILTIN_FORMATS.get(number_format, ""))

        def end(name: str) -> None:
            if local(name) == "cellXfs":
                in_cell_styles[0] = False

        self.reader.parse(part, Handlers(start, end))
        dates: set[int] = set()
        durations: set[int] = set()
        for index, code in enumerate(formats):
            if len(code) > _MAX_FORMAT_CHARS:
                continue
            if is_date_format(code):
                dates.add(index)
            if is_timedelta_format(code):
                durations.add(index)
        return dates, durations

    def _too_many_styles(self) -> AppError:
        return self.budget.over(
            f"the workbook has more than {MAX_STYLES:,} cell styles", max_styles=MAX_STYLES
        )


def _part_of_type(relationships: dict[str, tuple[str, str]], suffix: str, default: str) -> str:
    for type_, part in relationships.values():
        if type_.endswith(suffix):
            return part
    return default


class _Sheet:
    """One worksheet's rows, written as a Markdown table as they are parsed."""

    __slots__ = (
        "budget", "cell_style", "cell_type", "column", "date_styles", "depth", "epoch", "in_cell",
        "in_row", "inline", "max_depth", "number", "phonetic", "row", "row_chars", "strings",
        "timedelta_styles", "value", "value_chars", "width", "workbook",
    )  # fmt: skip

    def __init__(
        self,
        workbook: _Workbook,
        strings: list[str],
        date_styles: set[int],
        timedelta_styles: set[int],
        epoch: datetime.datetime,
    ) -> None:
        self.workbook = workbook
        self.budget = workbook.budget
        self.strings = strings
        self.date_styles = date_styles
        self.timedelta_styles = timedelta_styles
        self.epoch = epoch
        self.width = 0  # the header's; 0 until the first non-blank row
        self.depth = 0  # open elements, against MAX_DEPTH (counted here: the hot path)
        self.max_depth = ooxml.MAX_DEPTH
        self.row: dict[int, str] = {}  # column -> text, non-empty cells only
        self.row_chars = 0
        self.column = 0
        self.in_row = False
        # The cell being read
        self.in_cell = False
        self.cell_type = "n"
        self.cell_style = 0
        self.value: list[str] | None = None  # where text is being collected, if anywhere
        self.value_chars = 0
        self.number: list[str] | None = None  # the <v> text
        self.inline: list[str] | None = None  # the <is> text
        self.phonetic = 0

    def handlers(self) -> Handlers:
        return Handlers(self.start, self.end, self.text, counts_depth=True)

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.workbook.reader.too_deep()
        if ":" in name:
            name = name.rpartition(":")[2]
        if name == "c":
            if self.in_row:
                self._start_cell(attributes)
        elif name == "v":
            if self.in_cell:
                self.number = self.value = []
                self.value_chars = 0
        elif name == "t":
            if self.inline is not None and not self.phonetic:
                self.value = self.inline
        elif name == "is":
            if self.in_cell:
                self.inline = []
                self.value_chars = 0
        elif name == "rPh":
            self.phonetic += 1
        elif name == "row":
            self.budget.rows += 1
            if self.budget.rows > MAX_ROWS:
                raise self.budget.over(
                    f"the workbook has more than {MAX_ROWS:,} rows", max_rows=MAX_ROWS
                )
            self.in_row = True
            self.row = {}
            self.row_chars = 0
            self.column = 0

    def end(self, name: str) -> None:
        self.depth -= 1
        if ":" in name:
            name = name.rpartition(":")[2]
        if name == "c":
            if self.in_cell:
                self._end_cell()
        elif name in ("v", "t"):
            self.value = None
        elif name == "rPh":
            self.phonetic -= 1
        elif name == "row":
            if self.in_row:
                self._end_row()
            self.in_row = False

    def text(self, data: str) -> None:
        if self.value is None:
            return
        self.value_chars += len(data)
        if self.value_chars > MAX_CELL_CHARS:
            raise self.budget.over(
                f"a cell holds more than {MAX_CELL_CHARS:,} characters (Excel's limit)",
                max_cell_chars=MAX_CELL_CHARS,
            )
        self.value.append(data)

    def _start_cell(self, attributes: dict[str, str]) -> None:
        budget = self.budget
        budget.cells += 1
        if budget.cells > MAX_CELLS:  # add_cells(1), inlined: this runs for every cell
            raise budget.too_many_cells()
        reference = attributes.get("r")
        if reference:
            self.column = _column_index(reference)
        else:
            self.column += 1
        if self.column > MAX_COLUMNS:
            raise self.budget.over(
                f"a cell lies beyond column XFD ({MAX_COLUMNS:,} columns, Excel's limit)",
                max_columns=MAX_COLUMNS,
            )
        self.in_cell = True
        self.cell_type = attributes.get("t", "n")
        style = attributes.get("s")
        self.cell_style = int(style) if style else 0

    def _end_cell(self) -> None:
        self.in_cell = False
        if self.number is None and self.inline is None:  # no value: the common <c/>
            self.row.pop(self.column, None)
            return
        text = _cell_text(self._cell_value())
        self.value = self.number = self.inline = None
        if not text:
            self.row.pop(self.column, None)
            return
        self.row_chars += len(text)
        if self.row_chars > MAX_ROW_CHARS:
            raise self.budget.over(
                f"a row holds more than {MAX_ROW_CHARS:,} characters of text",
                max_row_chars=MAX_ROW_CHARS,
            )
        self.row[self.column] = text

    def _cell_value(self) -> object:
        """The cell's value as openpyxl's `data_only` read gives it."""
        kind = self.cell_type
        if kind == "inlineStr":
            return None if self.inline is None else "".join(self.inline)
        raw = "".join(self.number) if self.number else None
        if not raw:
            return None
        if kind == "n":
            number: Any = _cast_number(raw)
            if self.cell_style in self.date_styles:
                try:
                    return from_excel(
                        number, self.epoch, timedelta=self.cell_style in self.timedelta_styles
                    )
                except (OverflowError, ValueError):
                    return "#VALUE!"  # openpyxl's value (and warning) for an impossible date
            return number
        if kind == "s":
            index = int(raw)
            if not 0 <= index < len(self.strings):
                raise WorkbookError(f"shared string {index} does not exist")
            return self.strings[index]
        if kind == "b":
            return bool(int(raw))
        if kind == "d":
            return from_ISO8601(raw)
        return raw  # "str" (a formula's text), "e" (an error such as #DIV/0!)

    def _end_row(self) -> None:
        row = self.row
        if not row:
            return
        last = max(row)
        width = self.width
        cells = max(last, width) if width else last
        self.budget.add_cells(cells - len(row))  # the empty cells written as padding
        texts = [row.get(column, "") for column in range(1, cells + 1)]
        self.workbook.reader.emit(f"| {' | '.join(texts)} |\n")
        if not width:
            self.width = last
            self.workbook.reader.emit(f"| {' | '.join(['---'] * last)} |\n")


def _column_index(reference: str) -> int:
    """1 for "A1" (or "$A$1"), 16,384 for "XFD7"; a malformed reference is a WorkbookError."""
    index = 0
    letters = 0
    for char in reference.lstrip("$"):
        if "A" <= char <= "Z" or "a" <= char <= "z":
            letters += 1
            if letters > 3:
                break
            index = index * 26 + (ord(char.upper()) - 64)
        else:
            break
    if not letters:
        raise WorkbookError(f"cell reference {reference[:20]!r} names no column")
    return index if letters <= 3 else MAX_COLUMNS + 1


def _cast_number(value: str) -> int | float:
    # As openpyxl: an int unless the text has a decimal point or an exponent.
    if "." in value or "E" in value or "e" in value:
        return float(value)
    return int(value)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    text = ("TRUE" if value else "FALSE") if isinstance(value, bool) else str(value)
    return (
        text.replace("|", "\\|").replace("\r\n", "<br>").replace("\r", "<br>").replace("\n", "<br>")
    )
