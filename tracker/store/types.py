"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, LargeBinary, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both engines.

    PostgreSQL stores ``timestamptz``. SQLite has no such type, so the value is
    stored as UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts correctly,
    compares correctly and is understood by SQLite's date functions. Values read
    back are always aware and in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given where UTC is required")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # a row written by hand into SQLite
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: JSON on SQLite (text checked by json functions), JSONB on PostgreSQL; None is SQL NULL
JSONValue = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

#: 64-bit keys on PostgreSQL; SQLite only auto-increments a plain INTEGER primary key
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")


class CompressedText(TypeDecorator[str]):
    """Text stored as bytes, compressed when that makes it smaller: ``bytea`` on
    PostgreSQL; on SQLite the column stays declared ``TEXT`` and holds a BLOB (SQLite
    keeps the storage class of what it is given), so no table has to be rebuilt.

    A value of ``COMPRESS_FROM`` bytes or more is stored as a zlib stream (its first
    byte is ``0x78``, ``x``) when that is shorter, any other as its UTF-8 bytes, except
    that text beginning with ``x`` is always compressed, so the first byte tells which
    it is (JSON text, what these columns hold, never begins so). Rows written before the
    column was compressed read back as they were (text on SQLite, UTF-8 bytes on
    PostgreSQL). The text read back is exactly the text written.
    """

    impl = LargeBinary
    cache_ok = True

    #: shorter values are stored as they are (zlib's header would eat the gain)
    COMPRESS_FROM = 256

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: str | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        data = value.encode("utf-8")
        if len(data) < self.COMPRESS_FROM and not data.startswith(b"x"):
            return data
        packed = zlib.compress(data, ZLIB_LEVEL)
        # text beginning with "x" is always compressed: the first byte tells them apart
        return packed if len(packed) < len(data) or data.startswith(b"x") else data

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):  # None, or a row from before (SQLite)
            return value
        data = bytes(value)
        if data[:1] == b"x":
            data = zlib.decompress(data)
        return data.decode("utf-8")


#: zlib's default: within a few per cent of its best on JSON, at a fraction of the CPU
ZLIB_LEVEL = 6
