-- +goose Up

-- Tells every replica when a job is added or leaves the active jobs, so
-- that a free slot or a new pending job is claimed at once rather than
-- at the next poll. Once per statement, and only on these two events:
-- results and stage changes, the hot path, send nothing.
-- +goose StatementBegin
CREATE FUNCTION notify_jobs_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobmanager_jobs', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER jobs_changed
AFTER INSERT OR DELETE ON jobs
FOR EACH STATEMENT EXECUTE FUNCTION notify_jobs_changed();

-- +goose Down
DROP TRIGGER jobs_changed ON jobs;
DROP FUNCTION notify_jobs_changed();
