-- graphloop's schema: runs, their events, their checkpoints.

CREATE TABLE runs (
    id               uuid PRIMARY KEY,
    graph            text NOT NULL,
    graph_version    integer NOT NULL,
    user_id          text NOT NULL,
    tenant           text,
    roles            jsonb NOT NULL DEFAULT '[]',
    durability       text NOT NULL DEFAULT 'sync' CHECK (durability IN ('sync', 'async', 'exit')),
    status           text NOT NULL CHECK (status IN
                         ('queued', 'running', 'waiting', 'interrupted', 'completed', 'failed', 'cancelled')),
    input            jsonb NOT NULL,
    output           jsonb,
    error            jsonb,
    step             bigint NOT NULL DEFAULT 0,
    percent          double precision NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    -- Ownership, for several processes sharing one database (see DESIGN: "Beyond one
    -- machine"): the owning process, its lease, and an epoch that fences stale owners.
    owner            text,
    lease_expires_at timestamptz,
    epoch            bigint NOT NULL DEFAULT 0
);

-- "A user's runs, newest first" (UUIDv7 ids order by creation).
CREATE INDEX runs_by_user_newest ON runs (user_id, id DESC);
-- Unfinished runs, for recovery on start.
CREATE INDEX runs_unfinished ON runs (status) WHERE status IN ('queued', 'running', 'waiting', 'interrupted');

-- Events and checkpoints carry no foreign key to runs: the run row is always written
-- first (same or earlier transaction), and a per-row key check costs the event log
-- about 40 % of its write throughput (docs/benchmarks.md). Deleting a run deletes its
-- events and checkpoints explicitly.
CREATE TABLE events (
    run_id  uuid NOT NULL,
    seq     bigint NOT NULL,
    user_id text NOT NULL,
    kind    text NOT NULL,
    step    bigint NOT NULL,
    node    text,
    percent double precision NOT NULL,
    data    jsonb NOT NULL,
    at      timestamptz NOT NULL,
    -- Also the index for "events of a run from seq N".
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE checkpoints (
    run_id     uuid NOT NULL,
    step       bigint NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, step)
);
