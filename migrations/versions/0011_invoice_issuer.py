"""The issuer and the payment terms on each invoice, as they were when it was finalized.

- ``invoices.issuer_name``, ``issuer_address`` (its lines), ``issuer_tax_id`` (NULL: none)
  and ``payment_terms_days``, from ``METERING_ISSUER_*`` and ``METERING_PAYMENT_TERMS_DAYS``
  at the close that finalized it. Exports print what is stored, so changing the settings
  later changes no issued invoice's files.
- Invoices finalized before this revision have ``issuer_name`` NULL: they are exported with
  the settings of the day, as before. Adding columns rewrites no row (the immutability
  trigger fires on UPDATE and DELETE only, and this is neither).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE invoices
    ADD COLUMN issuer_name text,
    ADD COLUMN issuer_address text[],
    ADD COLUMN issuer_tax_id text,
    ADD COLUMN payment_terms_days integer CHECK (payment_terms_days >= 0),
    ADD CONSTRAINT invoices_issuer_complete CHECK (
        (issuer_name IS NULL) = (issuer_address IS NULL)
        AND (issuer_name IS NULL) = (payment_terms_days IS NULL)
    );
COMMENT ON COLUMN invoices.issuer_name IS
    'Who issued it, as set when it was finalized; NULL before migration 0010'
    ' (exported with the settings of the day)';
"""
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE invoices DROP CONSTRAINT invoices_issuer_complete,"
        " DROP COLUMN issuer_name, DROP COLUMN issuer_address, DROP COLUMN issuer_tax_id,"
        " DROP COLUMN payment_terms_days"
    )
