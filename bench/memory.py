"""Case 3, memory: the worker's resident set (VmRSS) while case 1 drains, sampled twice a second.

The baseline is the RSS after the first 100,000 events (after half of them in shorter
runs): memory that keeps growing past it grows with volume, which a long-running worker
cannot afford.
"""

from __future__ import annotations

from bench.drain import Drain
from bench.report import Case, Figure, Target

MB = 1024 * 1024
TARGET_RSS_MB = 300
FLAT = 1.10  # RSS after N at most 10% above the baseline
CHECKPOINT = 100_000


def memory_case(run: Drain, checkpoint: int = CHECKPOINT) -> Case:
    _, first_n, first_rss = run.rss[0]
    mark = min(checkpoint, run.events // 2)
    _, mark_n, mark_rss = next(sample for sample in run.rss if sample[1] >= mark)
    _, last_n, last_rss = run.rss[-1]
    limit = Target("<=", TARGET_RSS_MB)
    baseline = f"RSS after {mark_n:,} events"
    return Case(
        "memory",
        [
            Figure(f"RSS after the first batch ({first_n:,} events)", first_rss / MB, "MB"),
            Figure(baseline, mark_rss / MB, "MB", targets=(limit,)),
            Figure(
                f"RSS after {last_n:,} events",
                last_rss / MB,
                "MB",
                baseline,
                mark_rss / MB,
                (limit, Target("<=", FLAT, of_ratio=True)),
            ),
            Figure("peak RSS (VmHWM)", run.peak_rss / MB, "MB", targets=(limit,)),
        ],
        notes=[f"flat: RSS after N at most {FLAT - 1:.0%} above RSS after {mark:,} events"],
        details={"samples_s_events_bytes": run.rss},
    )
