"""File formats: price files in, invoice exports (records and PDF) out."""
