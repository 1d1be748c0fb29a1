"""The ingest path: Kafka micro-batches → pure classification → one transaction per batch.

The path is a one-way chain of steps, built in one place (``chain.build_ingest``), each
step in a module of its own, in the spirit of arroyo's strategies with ``next_step``:

    Decode          bytes → an event or a rejection per record (pure; catalog lookups)
    Partition       → accepted and rejected
    WriteBatch      one transaction: ledger rows, rejections, quota effects (ApplyQuotas),
                    dead letters published meanwhile; returns what was new
    PublishQuotas   alerts and quota.state signals of the committed batch
    CommitOffsets   Kafka offsets, always last

The worker reads ``usage.events`` with a batch consumer (aiokafka ``getmany``) running as
a service inside the Faust worker (``service.IngestService``), rather than through a Faust
agent's per-event stream: on this machine Faust delivered about 5,000 events/s to
``stream.take_events`` doing no work at all, while ``getmany`` delivers over 200,000/s
(docs/performance.md). Faust still runs the worker: its lifecycle, signals, web server,
and the quota tables.

Exactly once in effect: the ledger stores each partition's next offset in the same
transaction as the batch and skips records it has already processed, and a partition
assigned to this worker starts where the ledger says. Kafka's committed offsets are
written after each commit for monitoring tools, but correctness never depends on them.

Failure policy (billing prefers stopping to guessing): a batch is retried until it
commits; transient PostgreSQL or Kafka errors are retried with back-off. No record can
hold the batch up for ever: validation rejects what PostgreSQL cannot store, and if the
database still refuses the batch because of what a record holds (a data or integrity
error), the records it refuses are found by bisection in rolled-back trial transactions
and dead-lettered as ``unstorable`` with the error, and the rest is written. On SIGTERM the
current batch finishes and commits. If it cannot finish within a grace period, or fails
with an error no record is to blame for, the process exits and the batch is processed
again on restart.
"""
