-- name: ListHistory :many
-- The latest run of every ended job, oldest first.
SELECT latest.id, latest.doc
FROM (
    SELECT DISTINCT ON (h.id) h.id, h.doc, h.created, h.seq
    FROM history h
    ORDER BY h.id, h.seq DESC
) latest
ORDER BY latest.created, latest.seq;

-- name: GetHistoryJob :one
-- The latest run of an ended job.
SELECT doc
FROM history
WHERE id = $1
ORDER BY seq DESC
LIMIT 1;

-- name: HistoryHasJob :one
SELECT EXISTS (SELECT 1 FROM history WHERE id = $1);
