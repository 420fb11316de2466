-- +goose Up

-- Active jobs: pending or running. A job leaves this table in the same
-- transaction that writes its final document into history.
CREATE TABLE jobs (
    id            text PRIMARY KEY,
    -- Creation order; pending jobs start in this order.
    seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    status        text NOT NULL CHECK (status IN ('pending', 'running')),
    -- The job document as the API shows it.
    doc           jsonb NOT NULL,
    -- The pipeline as fetched when the job started; later edits in the
    -- registry do not reach a running job.
    pipeline      jsonb,
    -- The stage being run, counted from 0.
    stage         integer NOT NULL DEFAULT 0,
    stage_started timestamptz,
    -- The inputs of the stage being run, as its record in the document
    -- will list them.
    stage_inputs  jsonb,
    -- When the engine must next look at the job: at once for a job that
    -- waits to be resolved, or the end of a replica's lease on that step.
    due_at        timestamptz,
    -- The replica whose lease due_at is, if it is one.
    lease_owner   text,
    created       timestamptz NOT NULL
);

CREATE INDEX jobs_pending_idx ON jobs (seq) WHERE status = 'pending';
CREATE INDEX jobs_due_idx ON jobs (due_at) WHERE due_at IS NOT NULL;

-- Ended jobs: finished, failed or aborted. Every run of an id is kept.
CREATE TABLE history (
    seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id      text NOT NULL,
    status  text NOT NULL CHECK (status IN ('finished', 'failed', 'aborted')),
    doc     jsonb NOT NULL,
    created timestamptz NOT NULL,
    ended   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX history_id_idx ON history (id, seq DESC);

-- One row per worker of the running stage of a job and of the stages it
-- ran before. A row is the record of intent and outcome for every call
-- the engine makes about that worker.
CREATE TABLE workers (
    job_id        text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stage         integer NOT NULL,
    -- Position of the worker's source within the stage.
    idx           integer NOT NULL,
    -- The body of the request that starts the worker, built when the
    -- stage is planned, so that a retried start sends the same request.
    request       jsonb NOT NULL,
    -- planned: not asked for yet; starting: the start request is out;
    -- running: started, results awaited; reported: its result is in and
    -- it is being removed; done: removed, its log kept.
    state         text NOT NULL
                  CHECK (state IN ('planned', 'starting', 'running', 'reported', 'done')),
    instance      text,
    log           text,
    failed_checks integer NOT NULL DEFAULT 0,
    -- When the engine must next act on the worker: start it, check it,
    -- remove it, or take over a lease that ran out.
    due_at        timestamptz,
    -- The replica whose lease due_at is, if it is one.
    lease_owner   text,
    PRIMARY KEY (job_id, stage, idx)
);

CREATE UNIQUE INDEX workers_instance_idx ON workers (job_id, instance);
CREATE INDEX workers_due_idx ON workers (due_at) WHERE due_at IS NOT NULL;

-- Results as workers post them, kept before they are matched to a worker:
-- a fast worker can report before its start has been recorded. The key
-- makes a repeated delivery count once.
CREATE TABLE results (
    job_id   text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    instance text NOT NULL,
    outputs  jsonb NOT NULL,
    received timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, instance)
);

-- Calls owed to the platform after a job ended: stop a worker that still
-- runs, delete a data-cache file. Any replica carries them out.
CREATE TABLE chores (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind     text NOT NULL CHECK (kind IN ('stop_worker', 'delete_file')),
    job_id   text NOT NULL,
    target   text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    due_at   timestamptz NOT NULL DEFAULT now(),
    lease_owner text
);

CREATE INDEX chores_due_idx ON chores (due_at);

-- +goose Down
DROP TABLE chores;
DROP TABLE results;
DROP TABLE workers;
DROP TABLE history;
DROP TABLE jobs;
