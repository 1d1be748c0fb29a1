"""Fonts the invoice PDF embeds: DejaVu Sans (see LICENSE here), which covers Latin with
accents, Greek and Cyrillic. Japanese and other CJK text falls back to Noto Sans JP from the
``pylopdf-fonts-jp`` package."""
