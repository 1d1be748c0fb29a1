"""What the tests share: the CLI runner, the pipeline helpers, waiting, logins, usage rows.

A thin layer for pytest over ``metering.services`` (worker process, scratch databases,
``poll_until``), which the benchmarks use too.
"""
