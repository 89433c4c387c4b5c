"""Archiving output files before the upstream deletes them (SPEC, "Archived outputs"):
where they are stored (``storage``), how they are fetched (``download``), and the
loop that does it (``archiver``)."""
