"""Loaders: how raw rows come out of a source (Parquet, CSV, or a plug-in).

A loader splits its source into *units* (here: files), each with a fingerprint,
so that ingest can be incremental: a unit seen before with the same fingerprint
is skipped. A loader for a warehouse extract or a Spark table implements the
same three methods and is named in a source as ``format: package.module:Class``.
"""
from __future__ import annotations

import glob
import hashlib
import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ..errors import IngestError, InvalidDefinition
from ..repo.definitions import Source


@dataclass(frozen=True)
class SourceUnit:
    """One independently ingestible piece of a source, e.g. a file."""

    id: str            # stable name, relative to the repository where possible
    fingerprint: str   # changes whenever the content may have changed
    path: Path | None = None


class Loader(ABC):
    """Reads a source. Rows are returned as found; typing to the declared schema is ingest's job."""

    #: folders whose files are never source rows: the repository's own stores (set by get_loader)
    exclude: tuple[Path, ...] = ()

    def __init__(self, source: Source, root: Path) -> None:
        self.source = source
        self.root = root

    @abstractmethod
    def units(self) -> list[SourceUnit]:
        """The pieces the source holds now, in a stable order."""

    @abstractmethod
    def schema(self) -> pa.Schema:
        """The columns and types the source offers (read from file metadata, not the data)."""

    @abstractmethod
    def read(self, unit: SourceUnit, columns: list[str]) -> pa.Table:
        """The rows of one unit, restricted to ``columns``; raises IngestError naming the file."""

    def row_label(self, row: int) -> str:
        """How a 0-based row index is named in messages for this format."""
        return f"row {row + 1}"


class _FileLoader(Loader):
    suffixes: tuple[str, ...] = ()

    def files(self) -> list[Path]:
        pattern = self.source.path
        base = Path(pattern) if Path(pattern).is_absolute() else self.root / pattern
        if any(ch in pattern for ch in "*?["):
            # only the source's path is a pattern: the repository's own folder may hold [ * ?
            prefix = "" if Path(pattern).is_absolute() else glob.escape(str(self.root)) + os.sep
            found = [Path(p) for p in glob.glob(prefix + pattern, recursive=True)]
        elif base.is_dir():
            found = [p for p in base.rglob("*") if p.suffix.lower() in self.suffixes
                     or "".join(p.suffixes[-2:]).lower() in self.suffixes]
        else:
            found = [base] if base.exists() else []
        files = sorted(p for p in found if p.is_file() and not p.name.startswith((".", "_")))
        if self.exclude:  # a source folder that holds the offline store must not read its parts
            files = [p for p in files if not any(p.resolve().is_relative_to(ex) for ex in self.exclude)]
        return files

    def units(self) -> list[SourceUnit]:
        out = []
        for p in self.files():
            st = p.stat()
            fp = hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
            out.append(SourceUnit(id=self._rel(p), fingerprint=fp, path=p))
        return out

    def _rel(self, p: Path) -> str:
        try:
            return str(p.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(p)

    def _first_file(self) -> Path:
        files = self.files()
        if not files:
            raise InvalidDefinition(f"no file matches path {self.source.path!r}",
                                    obj=f"source {self.source.name}", field="path")
        return files[0]


class ParquetLoader(_FileLoader):
    suffixes = (".parquet", ".pq", ".parq")

    def schema(self) -> pa.Schema:
        files = self.files()
        if not files:
            self._first_file()
        schemas = []
        for f in files[:64]:  # reading every footer of a huge lake is not needed to type-check
            try:
                schemas.append(pq.read_schema(f))
            except (pa.ArrowInvalid, OSError) as exc:
                raise IngestError(f"{self._rel(f)}: not a readable Parquet file: {exc}",
                                  file=self._rel(f)) from None
        try:
            return pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise IngestError(f"source {self.source.name}: files disagree on the schema: {exc}") from None

    def read(self, unit: SourceUnit, columns: list[str]) -> pa.Table:
        try:
            # a column this file lacks is left out, so that ingest names it (not a FieldRef error)
            present = set(pq.read_schema(unit.path).names)
            return pq.read_table(unit.path, columns=[c for c in columns if c in present])
        except (pa.ArrowInvalid, OSError) as exc:
            raise IngestError(f"{unit.id}: cannot read Parquet: {exc}", file=unit.id) from None


class CsvLoader(_FileLoader):
    """CSV with a header line. ``options``: delimiter, quote_char, null_values, encoding."""

    suffixes = (".csv", ".csv.gz", ".tsv")

    def _options(self) -> tuple[pcsv.ReadOptions, pcsv.ParseOptions, dict[str, Any]]:
        opts = dict(self.source.options)
        parse = pcsv.ParseOptions(delimiter=opts.pop("delimiter", "\t" if self.source.path.endswith(".tsv") else ","),
                                  quote_char=opts.pop("quote_char", '"'))
        read = pcsv.ReadOptions(encoding=opts.pop("encoding", "utf8"))
        return read, parse, opts

    def schema(self) -> pa.Schema:
        path = self._first_file()
        read, parse, opts = self._options()
        try:
            with pcsv.open_csv(path, read_options=read, parse_options=parse,
                               convert_options=self._convert(opts, None, None)) as reader:
                return reader.schema
        except (pa.ArrowInvalid, OSError) as exc:
            raise IngestError(f"{self._rel(path)}: not a readable CSV file: {exc}",
                              file=self._rel(path)) from None

    def _convert(self, opts: dict[str, Any], columns: list[str] | None,
                 as_text: list[str] | None) -> pcsv.ConvertOptions:
        nulls = opts.get("null_values", ["", "NULL", "null", "NA", "N/A", "NaN", "nan", "None"])
        types = {c: pa.string() for c in as_text} if as_text else None
        return pcsv.ConvertOptions(include_columns=columns, column_types=types, null_values=nulls,
                                   strings_can_be_null=True)

    def read(self, unit: SourceUnit, columns: list[str]) -> pa.Table:
        read, parse, opts = self._options()
        try:
            return pcsv.read_csv(unit.path, read_options=read, parse_options=parse,
                                 convert_options=self._convert(opts, columns, None))
        except pa.ArrowKeyError:
            # a column this file lacks: read the others, so that ingest names the missing one
            try:
                with pcsv.open_csv(unit.path, read_options=read, parse_options=parse) as reader:
                    header = set(reader.schema.names)
            except (pa.ArrowInvalid, OSError) as exc:
                raise IngestError(f"{unit.id}: cannot parse CSV: {exc}", file=unit.id) from None
            return self.read(unit, [c for c in columns if c in header])
        except pa.ArrowInvalid as exc:
            if "CSV conversion error" not in str(exc):
                raise IngestError(f"{unit.id}: cannot parse CSV: {exc}", file=unit.id) from None
        # type inference met a bad value past its first block: read as text so the
        # later cast can name the exact line
        try:
            return pcsv.read_csv(unit.path, read_options=read, parse_options=parse,
                                 convert_options=self._convert(opts, columns, columns))
        except pa.ArrowInvalid as exc:
            raise IngestError(f"{unit.id}: cannot parse CSV: {exc}", file=unit.id) from None

    def row_label(self, row: int) -> str:
        return f"line {row + 2} (row {row + 1})"


_BUILTIN: dict[str, type[Loader]] = {"parquet": ParquetLoader, "csv": CsvLoader}


def get_loader(source: Source, root: Path, exclude: Sequence[Path] = ()) -> Loader:
    """The loader for a source's format; ``module:Class`` names a plug-in Loader subclass.

    No file under a folder in ``exclude`` (the repository's stores, RepoConfig.store_paths)
    is ever one of the source's units, whatever its path matches."""
    loader = _make_loader(source, root)
    loader.exclude = tuple(Path(p).resolve() for p in exclude)
    return loader


def _make_loader(source: Source, root: Path) -> Loader:
    fmt = source.format or "parquet"
    if fmt in _BUILTIN:
        return _BUILTIN[fmt](source, root)
    module_name, _, cls_name = fmt.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidDefinition(f"cannot load loader {fmt!r}: {exc}", obj=f"source {source.name}",
                                field="format") from None
    if not (isinstance(cls, type) and issubclass(cls, Loader)):
        raise InvalidDefinition(f"{fmt!r} is not a fstore.offline.Loader subclass",
                                obj=f"source {source.name}", field="format")
    return cls(source, root)
