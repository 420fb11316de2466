-- name: InsertJob :execrows
-- Adds a pending job unless one with the same id is active.
INSERT INTO jobs (id, status, doc, created)
VALUES ($1, 'pending', $2, $3)
ON CONFLICT (id) DO NOTHING;

-- name: ListActiveJobs :many
SELECT id, doc
FROM jobs
ORDER BY seq;

-- name: GetActiveJob :one
SELECT doc
FROM jobs
WHERE id = $1;

-- name: LockJob :one
-- Locks the job's row: every change to a job starts here.
SELECT id, status, doc, pipeline, stage, stage_started, stage_inputs, created
FROM jobs
WHERE id = $1
FOR UPDATE;

-- name: EndJob :execrows
-- Moves a job to history with its final document.
WITH ended AS (
    DELETE FROM jobs
    WHERE jobs.id = @id
    RETURNING jobs.id, jobs.created
)
INSERT INTO history (id, status, doc, created)
SELECT ended.id, @status, @doc, ended.created
FROM ended;

-- name: CountActiveJobs :many
SELECT status, count(*) AS jobs
FROM jobs
GROUP BY status;
