"""Flights per airport, direction and UTC day, kept exact by triggers on flight_data.

``GET /flights/average`` read every flight of the window (an index-only scan
whose length grows with the table's density: 5x the rows, 5x the work). The
counts table answers it with one row per day. Statement-level triggers with
transition tables keep it exact for every write path (the collector's
upserts, retention deletes, COPY, TRUNCATE, manual SQL), in the writing
transaction.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _deltas(rows: str, sign: str) -> str:
    """Select (airport, direction, day, delta) rows for the flights of a transition table."""
    return (
        f"SELECT est_arrival_airport, 'arrival', (last_seen AT TIME ZONE 'UTC')::date, {sign}1 "
        f"FROM {rows} WHERE est_arrival_airport IS NOT NULL "
        f"UNION ALL SELECT est_departure_airport, 'departure', "
        f"(first_seen AT TIME ZONE 'UTC')::date, {sign}1 "
        f"FROM {rows} WHERE est_departure_airport IS NOT NULL"
    )


def _apply(deltas: str) -> str:
    # Sorted, so concurrent writers lock count rows in one order and cannot deadlock.
    return (
        "INSERT INTO flight_day_counts AS c (airport_code, direction, day, flights) "
        "SELECT airport, direction, day, sum(delta) "
        f"FROM ({deltas}) AS changes (airport, direction, day, delta) "
        "GROUP BY airport, direction, day HAVING sum(delta) <> 0 "
        "ORDER BY airport, direction, day "
        "ON CONFLICT (airport_code, direction, day) "
        "DO UPDATE SET flights = c.flights + EXCLUDED.flights;"
    )


FUNCTION = f"""
CREATE FUNCTION count_flight_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM flight_day_counts;
    ELSIF TG_OP = 'INSERT' THEN
        {_apply(_deltas("new_rows", "+"))}
    ELSIF TG_OP = 'DELETE' THEN
        {_apply(_deltas("old_rows", "-"))}
    ELSE
        {_apply(_deltas("new_rows", "+") + " UNION ALL " + _deltas("old_rows", "-"))}
    END IF;
    RETURN NULL;
END
$$
"""
TRIGGERS = {
    "INSERT": "REFERENCING NEW TABLE AS new_rows",
    "UPDATE": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "DELETE": "REFERENCING OLD TABLE AS old_rows",
    "TRUNCATE": "",
}


def upgrade():
    op.create_table(
        "flight_day_counts",
        sa.Column("airport_code", sa.String(length=8), nullable=False),
        sa.Column("direction", sa.String(length=9), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("flights", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "direction IN ('arrival', 'departure')", name="ck_flight_day_counts_direction"
        ),
        sa.PrimaryKeyConstraint("airport_code", "direction", "day"),
    )
    op.execute(FUNCTION)
    for event, referencing in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER flight_day_counts_{event.lower()} AFTER {event} ON flight_data "
            f"{referencing} FOR EACH STATEMENT EXECUTE FUNCTION count_flight_days()"
        )
    # Flights stored before this migration.
    op.execute(_apply(_deltas("flight_data", "+")))


def downgrade():
    for event in TRIGGERS:
        op.execute(f"DROP TRIGGER flight_day_counts_{event.lower()} ON flight_data")
    op.execute("DROP FUNCTION count_flight_days()")
    op.drop_table("flight_day_counts")
