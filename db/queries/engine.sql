-- name: LockRunningCount :exec
-- Serialises the claiming of pending jobs across replicas, so that the
-- count of running jobs the claim reads stays true until it commits.
SELECT pg_advisory_xact_lock(7305316172934221);

-- name: ClaimPendingJobs :many
-- Starts the oldest pending jobs while fewer than max_running run.
UPDATE jobs
SET status = 'running',
    doc = jsonb_set(doc, '{status}', '"running"'),
    due_at = now() + make_interval(secs => @lease_seconds::float8),
    lease_owner = @owner::text
WHERE id IN (
    SELECT p.id
    FROM jobs p
    WHERE p.status = 'pending'
    ORDER BY p.seq
    LIMIT greatest(sqlc.arg(slots)::int - (SELECT count(*) FROM jobs AS running_job WHERE running_job.status = 'running'), 0)
    FOR UPDATE SKIP LOCKED
)
RETURNING id, (doc->>'ds_id')::text AS ds_id;

-- name: ClaimDueJobs :many
-- Takes over running jobs whose resolving step was left undone.
UPDATE jobs
SET due_at = now() + make_interval(secs => @lease_seconds::float8),
    lease_owner = @owner::text
WHERE id IN (
    SELECT d.id
    FROM jobs d
    WHERE d.due_at <= now() AND d.status = 'running'
    ORDER BY d.due_at
    LIMIT @max_jobs
    FOR UPDATE SKIP LOCKED
)
RETURNING id, (doc->>'ds_id')::text AS ds_id;

-- name: ClaimDueWorkers :many
-- Takes the workers whose next step is due: a start, a check, a removal,
-- or one of these whose lease ran out. A planned worker becomes starting:
-- the record that its start request is about to go out.
UPDATE workers w
SET due_at = now() + make_interval(secs => @lease_seconds::float8),
    lease_owner = @owner::text,
    state = CASE WHEN w.state = 'planned' THEN 'starting' ELSE w.state END
FROM (
    SELECT d.job_id, d.stage, d.idx
    FROM workers d
    WHERE d.due_at <= now()
    ORDER BY d.due_at
    LIMIT @max_workers
    FOR UPDATE SKIP LOCKED
) due
WHERE w.job_id = due.job_id AND w.stage = due.stage AND w.idx = due.idx
RETURNING w.job_id, w.stage, w.idx, w.state, w.instance, w.request;

-- name: SetJobPipeline :exec
-- Records the resolved pipeline and the stage about to start.
UPDATE jobs
SET doc = @doc,
    pipeline = @pipeline,
    stage = @stage,
    stage_started = @started::timestamptz,
    stage_inputs = @stage_inputs,
    due_at = NULL,
    lease_owner = NULL
WHERE id = @id;

-- name: SetJobStage :exec
-- Records a completed stage in the document and the next one as started.
UPDATE jobs
SET doc = @doc,
    stage = @stage,
    stage_started = @started::timestamptz,
    stage_inputs = @stage_inputs
WHERE id = @id;

-- name: InsertWorker :exec
-- Plans a worker. A claimed worker is marked starting, with a lease, for
-- the caller to start at once; the others wait for a free slot.
INSERT INTO workers (job_id, stage, idx, request, state, due_at, lease_owner)
VALUES (
    @job_id, @stage, @idx, @request,
    CASE WHEN @claimed::bool THEN 'starting' ELSE 'planned' END,
    CASE WHEN @claimed::bool THEN now() + make_interval(secs => @lease_seconds::float8) END,
    CASE WHEN @claimed::bool THEN @owner::text END
);

-- name: StageWorkers :many
SELECT w.idx, w.state, w.instance, w.log, w.due_at, r.outputs
FROM workers w
LEFT JOIN results r ON r.job_id = w.job_id AND r.instance = w.instance
WHERE w.job_id = @job_id AND w.stage = @stage
ORDER BY w.idx;

-- name: GetWorker :one
SELECT state, instance, failed_checks
FROM workers
WHERE job_id = @job_id AND stage = @stage AND idx = @idx;

-- name: WorkerByInstance :one
SELECT stage, idx, state
FROM workers
WHERE job_id = @job_id AND instance = @instance;

-- name: SetWorkerRunning :one
-- Records a started worker's instance, if its start is still the one on
-- record, and returns the result the instance may have posted already.
UPDATE workers w
SET state = 'running',
    instance = @instance,
    failed_checks = 0,
    due_at = now() + make_interval(secs => @check_seconds::float8),
    lease_owner = NULL
WHERE w.job_id = @job_id AND w.stage = @stage AND w.idx = @idx AND w.state = 'starting'
RETURNING (
    SELECT r.outputs FROM results r WHERE r.job_id = w.job_id AND r.instance = w.instance
) AS early_outputs;

-- name: ReportRunningWorker :one
-- Marks the running worker of an instance as reported, leased to the
-- caller for removal, and says which worker it is.
UPDATE workers
SET state = 'reported',
    due_at = now() + make_interval(secs => @lease_seconds::float8),
    lease_owner = @owner::text
WHERE job_id = @job_id AND instance = @instance AND state = 'running'
RETURNING stage, idx;

-- name: SetWorkerReported :exec
-- Marks a worker whose result is in; the caller removes it before the
-- lease runs out.
UPDATE workers
SET state = 'reported',
    due_at = now() + make_interval(secs => @lease_seconds::float8),
    lease_owner = @owner::text
WHERE job_id = @job_id AND stage = @stage AND idx = @idx;

-- name: SetWorkerDone :execrows
-- Records the removal of a worker whose result is in.
UPDATE workers
SET state = 'done',
    log = @log,
    due_at = NULL,
    lease_owner = NULL
WHERE job_id = @job_id AND stage = @stage AND idx = @idx AND state = 'reported';

-- name: SetWorkerChecked :one
-- Records a check on a running instance and returns the failed checks in
-- a row. A failed check keeps what the worker wrote, if anything.
UPDATE workers
SET failed_checks = CASE WHEN @alive::bool THEN 0 ELSE failed_checks + 1 END,
    log = coalesce(sqlc.narg(log)::text, log),
    due_at = now() + make_interval(secs => @check_seconds::float8),
    lease_owner = NULL
WHERE job_id = @job_id AND stage = @stage AND idx = @idx AND state = 'running' AND instance = @instance
RETURNING failed_checks;

-- name: ClaimNextPlanned :many
-- Gives the next planned workers of a stage to the caller to start.
UPDATE workers w
SET state = 'starting',
    due_at = now() + make_interval(secs => @lease_seconds::float8),
    lease_owner = @owner::text
WHERE (w.job_id, w.stage, w.idx) IN (
    SELECT p.job_id, p.stage, p.idx
    FROM workers p
    WHERE p.job_id = @job_id AND p.stage = @stage AND p.state = 'planned' AND p.due_at IS NULL
    ORDER BY p.idx
    LIMIT @max_workers
)
RETURNING w.job_id, w.stage, w.idx, w.state, w.instance, w.request;

-- name: InsertResult :execrows
-- Keeps a worker's result; a second delivery of it changes nothing.
INSERT INTO results (job_id, instance, outputs)
VALUES (@job_id, @instance, @outputs)
ON CONFLICT (job_id, instance) DO NOTHING;

-- name: InsertChores :many
-- Owes the platform a batch of calls, leased to the caller to make at once.
INSERT INTO chores (kind, job_id, target, attempts, due_at, lease_owner)
SELECT
    unnest(@kinds::text[]), @job_id::text, unnest(@targets::text[]), 1,
    now() + make_interval(secs => @lease_seconds::float8), @owner::text
RETURNING id, kind, target;

-- name: ClaimDueChores :many
UPDATE chores c
SET due_at = now() + make_interval(secs => @lease_seconds::float8),
    lease_owner = @owner::text,
    attempts = c.attempts + 1
WHERE c.id IN (
    SELECT d.id
    FROM chores d
    WHERE d.due_at <= now()
    ORDER BY d.due_at
    LIMIT @max_chores
    FOR UPDATE SKIP LOCKED
)
RETURNING c.id, c.kind, c.job_id, c.target, c.attempts;

-- name: DeleteChores :exec
DELETE FROM chores
WHERE id = ANY(@ids::bigint[]);


-- name: ReleaseJobLeases :exec
-- Hands back the steps a stopping replica holds, for others to take.
UPDATE jobs
SET due_at = now(), lease_owner = NULL
WHERE lease_owner = @owner::text;

-- name: ReleaseWorkerLeases :exec
UPDATE workers
SET due_at = now(), lease_owner = NULL
WHERE lease_owner = @owner::text;

-- name: ReleaseChoreLeases :exec
UPDATE chores
SET due_at = now(), lease_owner = NULL
WHERE lease_owner = @owner::text;

-- name: LiveInstances :many
-- The instances of a job's running stage that may still run.
SELECT w.instance::text AS instance
FROM workers w
JOIN jobs j ON j.id = w.job_id AND j.stage = w.stage
WHERE w.job_id = @job_id AND w.instance IS NOT NULL AND w.state IN ('running', 'reported');

-- name: SetInstanceLog :exec
UPDATE workers
SET log = @log
WHERE job_id = @job_id AND instance = @instance;
