"""Price corrections: imports that re-rate periods already invoiced.

- ``price_imports``: one row per `metering prices import` that changed the price book. Its id
  is the book's revision: a close compares it with the revision it read the book at, so that
  no tenant is billed with a book that changed meanwhile. ``corrected`` marks an import that
  changed prices of periods already invoiced (``--correct-invoiced``).
- ``period_billing.repriced_by``: the import that last changed the prices of a closed period
  since it was billed. The tenant's next invoice re-rates the period, bills the difference as
  adjustment lines and clears it, in the same transaction.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE price_imports (
            import_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            imported_at timestamptz NOT NULL DEFAULT now(),
            source text,
            added integer NOT NULL,
            replaced integer NOT NULL,
            corrected boolean NOT NULL
        );
        COMMENT ON TABLE price_imports IS
            'Imports that changed the price book; the latest id is its revision; docs/billing.md';
        ALTER TABLE period_billing
            ADD COLUMN repriced_by bigint REFERENCES price_imports;
        COMMENT ON COLUMN period_billing.repriced_by IS
            'A price correction since the period was billed: the next invoice adjusts it';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE period_billing DROP COLUMN repriced_by;
        DROP TABLE price_imports;
        """
    )
