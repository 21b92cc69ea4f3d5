"""The typed visit row the writer copies is the visit table, column for column."""

from __future__ import annotations

from calltracker.db.models import Visit
from calltracker.tracking.writer import VISIT_COLUMNS, VisitRow


def test_the_visit_row_has_every_column_of_the_table_and_nothing_else() -> None:
    # COPY sends astuple(row) against VISIT_COLUMNS; a column added to the table and not
    # to VisitRow would be left to its default silently, so the two must stay one list.
    assert sorted(VISIT_COLUMNS) == sorted(column.name for column in Visit.__table__.columns)
    assert VISIT_COLUMNS == list(VisitRow.__struct_fields__)
