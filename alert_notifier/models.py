"""Alert Notifier tables: the emails sent (one per crossing, ever), and the broker outbox."""

from datetime import datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from common.broker.messages import ID_LENGTH
from common.broker.outbox import outbox_table
from common.emails import EMAIL_MAX_LENGTH

db = SQLAlchemy()

# "crossing" or "sla-breach".
KIND_LENGTH = 16


class SentEmail(db.Model):
    """An email the mail server accepted, by the crossing (or breach) it tells about.

    Written in the transaction that sends it: a delivery of the same crossing
    finds the row and sends nothing; a replica sending it at the same moment
    holds the row, and the other waits for its outcome.
    """

    __tablename__ = "sent_emails"

    crossing_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))
    recipient: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


OUTBOX = outbox_table(db.metadata)
