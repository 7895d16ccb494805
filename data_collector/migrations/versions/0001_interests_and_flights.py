"""User interests and flight data (the tables and columns of the original specification).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "user_interests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_email", sa.String(length=254), nullable=False),
        sa.Column("airport_code", sa.String(length=4), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_email", "airport_code", name="uq_user_interests_user_airport"),
    )
    op.create_index("ix_user_interests_airport_code", "user_interests", ["airport_code"])
    op.create_table(
        "flight_data",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("icao24", sa.String(length=6), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("est_departure_airport", sa.String(length=8), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("est_arrival_airport", sa.String(length=8), nullable=True),
        sa.Column("callsign", sa.String(length=8), nullable=True),
        sa.Column("est_departure_airport_horiz_distance", sa.Integer(), nullable=True),
        sa.Column("est_departure_airport_vert_distance", sa.Integer(), nullable=True),
        sa.Column("est_arrival_airport_horiz_distance", sa.Integer(), nullable=True),
        sa.Column("est_arrival_airport_vert_distance", sa.Integer(), nullable=True),
        sa.Column("departure_airport_candidates_count", sa.Integer(), nullable=True),
        sa.Column("arrival_airport_candidates_count", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("icao24", "first_seen", name="uq_flight_data_icao24_first_seen"),
    )
    op.create_index(
        "ix_flight_data_departure", "flight_data", ["est_departure_airport", "first_seen"]
    )
    op.create_index("ix_flight_data_arrival", "flight_data", ["est_arrival_airport", "last_seen"])


def downgrade():
    op.drop_table("flight_data")
    op.drop_table("user_interests")
