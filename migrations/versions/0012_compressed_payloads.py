"""compressed payloads: deliveries.payload held as bytes, zlib-compressed when larger

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

A delivery's payload is the prediction object as JSON text, logs included: about
2 KB for a 20 s image model, 2.4 times the rest of its row. On SQLite a row that
long spills into an overflow page of its own, half empty (4,164 bytes a delivery in
the benchmark's database, 36 % of a finished prediction's bytes). Payloads are now
stored as bytes, compressed with zlib from 256 bytes (``CompressedText`` in
tracker/store/types.py; 1,982 bytes become 618), and read back as the same text.

- PostgreSQL: the column becomes ``bytea``, each existing payload its UTF-8 bytes
  (``ALTER COLUMN ... TYPE`` rewrites the table once, holding its lock meanwhile).
- SQLite: the column stays declared ``TEXT`` and new payloads are BLOBs in it
  (SQLite keeps what it is given); existing rows stay as they are and read back
  as before. Nothing is rewritten.

The downgrade writes every compressed payload back plain, in batches, and on
PostgreSQL makes the column text again.
"""

import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: payloads written back as text per round trip of the downgrade
BATCH = 1_000


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE deliveries ALTER COLUMN payload TYPE bytea"
            " USING convert_to(payload, 'UTF8')"
        )


def downgrade() -> None:
    conn = op.get_bind()
    postgresql = conn.dialect.name == "postgresql"
    after = 0
    while True:  # every compressed payload written back plain (text on SQLite)
        rows = conn.execute(
            sa.text("SELECT id, payload FROM deliveries WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            break
        plain = [(row[0], _as_text(row[1])) for row in rows if not isinstance(row[1], str)]
        if plain:
            conn.execute(
                sa.text("UPDATE deliveries SET payload = :payload WHERE id = :id"),
                [{"id": i, "payload": t.encode("utf-8") if postgresql else t} for i, t in plain],
            )
        after = rows[-1][0]
    if postgresql:
        op.execute(
            "ALTER TABLE deliveries ALTER COLUMN payload TYPE text"
            " USING convert_from(payload, 'UTF8')"
        )


def _as_text(value: object) -> str:
    """A stored payload as text: as it was (SQLite, written before), or its bytes
    decompressed when they begin with zlib's ``x``, then decoded."""
    if isinstance(value, str):
        return value
    data = bytes(value)  # type: ignore[call-overload]
    if data[:1] == b"x":
        data = zlib.decompress(data)
    return data.decode("utf-8")
