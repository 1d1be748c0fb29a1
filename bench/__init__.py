"""Benchmarks of the metering pipeline, each run next to its baseline in the same run.

`metering bench` (``bench.run.run_bench``) provisions a scratch database and fresh topics,
runs the cases below, prints a table and writes ``bench/results/<timestamp>.json``:

- ``drain``: a real worker drains N pre-produced events; ceilings are a bare aiokafka
  consumer and a binary COPY of as many ledger rows (``bench/drain.py``);
- ``memory``: the worker's RSS while it drains (``bench/memory.py``);
- ``storage``: PostgreSQL bytes per accepted event (``bench/storage.py``);
- ``latency``: Kafka create time to committed ledger row at a fixed rate
  (``bench/latency.py``);
- ``invoice_close``: closing a month of hourly aggregates (``bench/invoice_close.py``).

Results and timings are in docs/performance.md.
"""
