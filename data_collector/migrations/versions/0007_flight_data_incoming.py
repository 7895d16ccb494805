"""An empty, unlogged table each stored range of flights passes through on its way in.

The collector COPYs a range's flights into ``flight_data_incoming`` and moves
them into ``flight_data`` with one statement (``DELETE ... RETURNING`` feeding
``INSERT ... ON CONFLICT``), in the same transaction: the table is empty
again before every commit, and no other transaction ever sees its rows. It
is a plain table, not a temporary one, because the serving role may not
create temporary tables. Unlogged: what passes through it is written to
the WAL once, in ``flight_data``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = (
    "icao24, first_seen, est_departure_airport, last_seen, est_arrival_airport, callsign, "
    "est_departure_airport_horiz_distance, est_departure_airport_vert_distance, "
    "est_arrival_airport_horiz_distance, est_arrival_airport_vert_distance, "
    "departure_airport_candidates_count, arrival_airport_candidates_count"
)


def upgrade():
    # flight_data's columns and types, without its constraints, indexes or triggers.
    op.execute(
        f"CREATE UNLOGGED TABLE flight_data_incoming AS SELECT {COLUMNS} FROM flight_data "
        "WITH NO DATA"
    )


def downgrade():
    op.drop_table("flight_data_incoming")
