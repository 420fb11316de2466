package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/store/internal/sqldb"
)

// Options are the engine's rules that the store applies inside its
// transactions.
type Options struct {
	// Lease is how long a replica holds a step it has claimed.
	Lease time.Duration
	// Check is how long a running worker waits for its next check.
	Check time.Duration
	// StageWorkers caps the workers of one stage that run at once.
	StageWorkers int
	// Start holds the configuration-given parts of a start request.
	Start job.StartSettings
	// KeepFiles leaves the data-cache files of ended jobs in place.
	KeepFiles bool
	// Owner names this replica on the leases it takes.
	Owner string
}

// Chore kinds.
const (
	ChoreStopWorker = "stop_worker"
	ChoreDeleteFile = "delete_file"
)

// WorkerTask is a claimed step for one worker: start it (state starting),
// check it (running) or remove it (reported).
type WorkerTask struct {
	JobID    string
	Stage    int
	Idx      int
	State    string
	Instance string
	Request  json.RawMessage
}

// Chore is a claimed call owed to the platform after a job ended.
type Chore struct {
	ID       int64
	Kind     string
	JobID    string
	Target   string
	Attempts int
}

// Next is what a transaction hands its caller to do at once: steps it
// claimed on the caller's behalf. Left undone, they fall due again when
// their lease runs out.
type Next struct {
	Workers []WorkerTask
	Chores  []Chore
	// Ended is the final status the transaction gave its job, if it ended
	// it; an ended job frees a slot for a pending one.
	Ended job.Status
	// EndedJob is the id of that job, and Reason why it failed.
	EndedJob, Reason string
	// Kept counts the results the transaction kept; repeats are not kept.
	Kept int
}

func (n *Next) add(o Next) {
	n.Workers = append(n.Workers, o.Workers...)
	n.Chores = append(n.Chores, o.Chores...)
	n.Kept += o.Kept
	if o.Ended != "" {
		n.Ended, n.EndedJob, n.Reason = o.Ended, o.EndedJob, o.Reason
	}
}

// SetOptions sets the rules the engine's transactions apply.
func (s *Store) SetOptions(opts Options) {
	s.opts = opts
}

// Claimed is a running job leased to the caller to resolve.
type Claimed struct {
	ID   string
	DsID string
}

// ClaimPending starts the oldest pending jobs while fewer than maxRunning
// jobs run, counted across every replica. Each is leased to the caller to
// resolve.
func (s *Store) ClaimPending(ctx context.Context, maxRunning int) ([]Claimed, error) {
	var claimed []Claimed
	err := s.inTx(ctx, func(q *sqldb.Queries) error {
		if err := q.LockRunningCount(ctx); err != nil {
			return err
		}

		rows, err := q.ClaimPendingJobs(ctx, sqldb.ClaimPendingJobsParams{
			Owner:        s.opts.Owner,
			LeaseSeconds: s.opts.Lease.Seconds(),
			Slots:        int32(maxRunning),
		})
		if err != nil {
			return err
		}

		for _, r := range rows {
			claimed = append(claimed, Claimed{ID: r.ID, DsID: r.DsID})
		}

		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim pending jobs: %w", err)
	}

	return claimed, nil
}

// ClaimDue takes up to limit steps of each kind that are due: jobs to
// resolve, worker steps and chores, including those whose lease ran out.
func (s *Store) ClaimDue(ctx context.Context, limit int) ([]Claimed, Next, error) {
	lease := s.opts.Lease.Seconds()

	jobRows, err := s.q.ClaimDueJobs(ctx, sqldb.ClaimDueJobsParams{
		Owner: s.opts.Owner, LeaseSeconds: lease, MaxJobs: int32(limit)})
	if err != nil {
		return nil, Next{}, fmt.Errorf("claim due jobs: %w", err)
	}

	workers, err := s.q.ClaimDueWorkers(ctx, sqldb.ClaimDueWorkersParams{
		Owner:        s.opts.Owner,
		LeaseSeconds: lease, MaxWorkers: int32(limit),
	})
	if err != nil {
		return nil, Next{}, fmt.Errorf("claim due workers: %w", err)
	}

	chores, err := s.q.ClaimDueChores(ctx, sqldb.ClaimDueChoresParams{
		Owner:        s.opts.Owner,
		LeaseSeconds: lease, MaxChores: int32(limit),
	})
	if err != nil {
		return nil, Next{}, fmt.Errorf("claim due chores: %w", err)
	}

	jobs := make([]Claimed, len(jobRows))
	for i, r := range jobRows {
		jobs[i] = Claimed{ID: r.ID, DsID: r.DsID}
	}

	var next Next
	for _, w := range workers {
		next.Workers = append(next.Workers, workerTask(sqldb.ClaimNextPlannedRow(w)))
	}

	for _, c := range chores {
		next.Chores = append(next.Chores, Chore{
			ID: c.ID, Kind: c.Kind, JobID: c.JobID, Target: c.Target, Attempts: int(c.Attempts),
		})
	}

	return jobs, next, nil
}

// Resolved records a running job's data source and pipeline and plans its
// first stage. A job already resolved, or no longer active, is left as it
// is.
func (s *Store) Resolved(ctx context.Context, id string, ds job.DataSource, raw json.RawMessage) (Next, error) {
	next, err := s.change(ctx, id, func(q *sqldb.Queries, lj *lockedJob) (Next, error) {
		if lj.row.Status != string(job.StatusRunning) || lj.row.Pipeline != nil {
			return Next{}, nil
		}

		if err := lj.decode(); err != nil {
			return Next{}, err
		}

		p, err := job.ParsePipeline(raw)
		if err != nil {
			return s.end(ctx, q, lj, job.StatusFailed, "pipeline "+ds.PipelineID+": "+err.Error())
		}

		lj.pipeline = p
		lj.doc.PipelineID = &ds.PipelineID
		lj.doc.DsPlatformID = &ds.PlatformID
		lj.doc.DsPlatformTypeID = &ds.PlatformTypeID

		plan, err := job.PlanStage(p.Stage(0), job.InitSourceList(lj.doc))
		if err != nil {
			// Stage 0 never started: the row keeps no pipeline, so that
			// end writes no record of it (it would have no start time).
			return s.end(ctx, q, lj, job.StatusFailed, "stage 0: "+err.Error())
		}

		lj.row.Pipeline = raw

		doc, err := json.Marshal(lj.doc)
		if err != nil {
			return Next{}, fmt.Errorf("encode job: %w", err)
		}

		err = q.SetJobPipeline(ctx, sqldb.SetJobPipelineParams{
			ID: id, Doc: doc, Pipeline: raw, Stage: 0, StageInputs: mustJSON(plan.Record),
			Started: time.Now(),
		})
		if err != nil {
			return Next{}, fmt.Errorf("record pipeline: %w", err)
		}

		return s.planWorkers(ctx, q, lj, 0, plan)
	})

	return next, ignoreEnded(err)
}

// Fail ends an active job as failed, keeping the reason in its document.
// A job that has already ended is left as it is.
func (s *Store) Fail(ctx context.Context, id, reason string) (Next, error) {
	next, err := s.change(ctx, id, func(q *sqldb.Queries, lj *lockedJob) (Next, error) {
		return s.end(ctx, q, lj, job.StatusFailed, reason)
	})

	return next, ignoreEnded(err)
}

// FailResolving fails a running job whose pipeline could not be had,
// keeping what its data source said.
func (s *Store) FailResolving(ctx context.Context, id string, ds job.DataSource, reason string) (Next, error) {
	next, err := s.change(ctx, id, func(q *sqldb.Queries, lj *lockedJob) (Next, error) {
		if err := lj.decode(); err != nil {
			return Next{}, err
		}

		lj.doc.PipelineID = &ds.PipelineID
		lj.doc.DsPlatformID = &ds.PlatformID
		lj.doc.DsPlatformTypeID = &ds.PlatformTypeID

		return s.end(ctx, q, lj, job.StatusFailed, reason)
	})

	return next, ignoreEnded(err)
}

// LiveInstances returns the instances of a job's running stage that may
// still run, whose logs an abort keeps.
func (s *Store) LiveInstances(ctx context.Context, id string) ([]string, error) {
	instances, err := s.q.LiveInstances(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("list live instances: %w", err)
	}

	return instances, nil
}

// Abort ends a pending or running job as aborted, keeping in its running
// stage the logs given by instance. It returns job.ErrNotFound for an
// unknown id and job.ErrConflict for a job that has ended.
func (s *Store) Abort(ctx context.Context, id string, logs map[string]string) (Next, error) {
	return s.change(ctx, id, func(q *sqldb.Queries, lj *lockedJob) (Next, error) {
		for instance, log := range logs {
			err := q.SetInstanceLog(ctx, sqldb.SetInstanceLogParams{JobID: id, Instance: &instance, Log: &log})
			if err != nil {
				return Next{}, fmt.Errorf("keep log: %w", err)
			}
		}

		return s.end(ctx, q, lj, job.StatusAborted, "")
	})
}

// WorkerStarted records the outcome of a worker's start request: the new
// instance, or the error that kept it from starting, which fails the job.
// A result the instance posted before this record was made is matched now.
func (s *Store) WorkerStarted(ctx context.Context, t WorkerTask, instance string, startErr error) (Next, error) {
	next, err := s.change(ctx, t.JobID, func(q *sqldb.Queries, lj *lockedJob) (Next, error) {
		if startErr != nil {
			return s.startFailed(ctx, q, lj, t, startErr)
		}

		early, err := q.SetWorkerRunning(ctx, sqldb.SetWorkerRunningParams{
			JobID: t.JobID, Stage: int32(t.Stage), Idx: int32(t.Idx),
			Instance: &instance, CheckSeconds: s.opts.Check.Seconds(),
		})
		if errors.Is(err, pgx.ErrNoRows) {
			// Another replica took the start over and recorded it first.
			return s.stopInstance(ctx, q, t.JobID, instance)
		}

		if err != nil {
			return Next{}, fmt.Errorf("record worker start: %w", err)
		}

		if early == nil {
			return Next{}, nil
		}

		return s.matchResult(ctx, q, lj, t.Stage, t.Idx, instance, early)
	})
	if errors.Is(err, job.ErrConflict) && instance != "" {
		// The job ended while the worker was being started.
		return s.stopAfterEnd(ctx, t.JobID, instance)
	}

	return next, ignoreEnded(err)
}

// startFailed fails the job of a worker that could not be started, unless
// another replica has taken the start over meanwhile.
func (s *Store) startFailed(ctx context.Context, q *sqldb.Queries, lj *lockedJob, t WorkerTask,
	startErr error) (Next, error) {
	w, err := q.GetWorker(ctx, sqldb.GetWorkerParams{JobID: t.JobID, Stage: int32(t.Stage), Idx: int32(t.Idx)})
	if err != nil {
		return Next{}, fmt.Errorf("get worker: %w", err)
	}

	if w.State != "starting" {
		return Next{}, nil
	}

	return s.end(ctx, q, lj, job.StatusFailed,
		fmt.Sprintf("start worker %d of stage %d: %v", t.Idx, t.Stage, startErr))
}

// WorkerChecked records the outcome of a check on a running worker, with
// what a worker that failed the check wrote, if anything. The second
// failed check in a row fails the job.
func (s *Store) WorkerChecked(ctx context.Context, t WorkerTask, alive bool, log string) (Next, error) {
	var logged *string
	if log != "" {
		logged = &log
	}

	next, err := s.change(ctx, t.JobID, func(q *sqldb.Queries, lj *lockedJob) (Next, error) {
		failed, err := q.SetWorkerChecked(ctx, sqldb.SetWorkerCheckedParams{
			JobID: t.JobID, Stage: int32(t.Stage), Idx: int32(t.Idx), Instance: &t.Instance,
			Alive: alive, CheckSeconds: s.opts.Check.Seconds(), Log: logged,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return Next{}, nil // the worker reported, or the job moved on
		}

		if err != nil {
			return Next{}, fmt.Errorf("record check: %w", err)
		}

		if failed < 2 {
			return Next{}, nil
		}

		return s.end(ctx, q, lj, job.StatusFailed,
			fmt.Sprintf("worker %s of stage %d stopped without results", t.Instance, t.Stage))
	})

	return next, ignoreEnded(err)
}

// Report keeps the results workers posted for a job and matches each to
// the worker that sent it. A result from an instance not recorded yet is
// kept for when its start is recorded; a repeated one changes nothing.
func (s *Store) Report(ctx context.Context, id string, results map[string][]json.RawMessage) (Next, error) {
	instances := make([]string, 0, len(results))
	for instance := range results {
		instances = append(instances, instance)
	}
	sort.Strings(instances)

	return s.change(ctx, id, func(q *sqldb.Queries, lj *lockedJob) (Next, error) {
		var next Next
		for _, instance := range instances {
			if next.Ended != "" {
				// An earlier result of this post ended the job (an empty
				// one fails it); the rest have nothing left to apply to.
				break
			}

			outputs := mustJSON(results[instance])
			n, err := q.InsertResult(ctx, sqldb.InsertResultParams{JobID: id, Instance: instance, Outputs: outputs})
			if err != nil {
				return Next{}, fmt.Errorf("keep result: %w", err)
			}

			if n == 0 {
				continue
			}

			next.Kept++

			more, err := s.applyResult(ctx, q, lj, instance, outputs)
			if err != nil {
				return Next{}, err
			}

			next.add(more)
		}

		return next, nil
	})
}

// WorkerRemoved records that a reported worker was removed, with its log,
// hands its slot to the stage's next planned worker and completes the
// stage when it was the stage's last.
func (s *Store) WorkerRemoved(ctx context.Context, t WorkerTask, log string) (Next, error) {
	next, err := s.change(ctx, t.JobID, func(q *sqldb.Queries, lj *lockedJob) (Next, error) {
		n, err := q.SetWorkerDone(ctx, sqldb.SetWorkerDoneParams{
			JobID: t.JobID, Stage: int32(t.Stage), Idx: int32(t.Idx), Log: &log,
		})
		if err != nil {
			return Next{}, fmt.Errorf("record worker removal: %w", err)
		}

		if n == 0 {
			return Next{}, nil // another replica recorded it first
		}

		return s.completeStage(ctx, q, lj)
	})

	return next, ignoreEnded(err)
}

// ChoresDone forgets chores that were carried out, or given up on.
func (s *Store) ChoresDone(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}

	if err := s.q.DeleteChores(ctx, ids); err != nil {
		return fmt.Errorf("delete chores: %w", err)
	}

	return nil
}

// ReleaseLeases hands back every step this replica holds, so that other
// replicas take them at once. A stopping replica calls it once its own
// steps are done or abandoned.
func (s *Store) ReleaseLeases(ctx context.Context) error {
	return s.inTx(ctx, func(q *sqldb.Queries) error {
		if err := q.ReleaseJobLeases(ctx, s.opts.Owner); err != nil {
			return fmt.Errorf("release job leases: %w", err)
		}

		if err := q.ReleaseWorkerLeases(ctx, s.opts.Owner); err != nil {
			return fmt.Errorf("release worker leases: %w", err)
		}

		if err := q.ReleaseChoreLeases(ctx, s.opts.Owner); err != nil {
			return fmt.Errorf("release chore leases: %w", err)
		}

		return nil
	})
}

// lockedJob is an active job whose row the current transaction has
// locked. Its document and pipeline are decoded on demand (see decode).
type lockedJob struct {
	row      sqldb.LockJobRow
	doc      job.Job
	pipeline job.Pipeline
	// workers caches the running stage's workers once a step has read
	// them; a step that changes a worker afterwards must not use it.
	workers []sqldb.StageWorkersRow
	// decoded says that doc and pipeline have been read from row.
	decoded bool
}

// decode reads the job's document and pipeline, once per transaction.
// Only steps that change the document need them; most steps touch a
// worker alone, and decoding is a good part of a step's own work.
func (lj *lockedJob) decode() error {
	if lj.decoded {
		return nil
	}

	if err := json.Unmarshal(lj.row.Doc, &lj.doc); err != nil {
		return fmt.Errorf("decode job %s: %w", lj.row.ID, err)
	}

	if lj.row.Pipeline != nil {
		p, err := job.ParsePipeline(lj.row.Pipeline)
		if err != nil {
			return fmt.Errorf("decode pipeline of job %s: %w", lj.row.ID, err)
		}

		lj.pipeline = p
	}

	lj.decoded = true

	return nil
}

// stageWorkers returns the workers of the running stage, reading them
// once per transaction.
func (lj *lockedJob) stageWorkers(ctx context.Context, q *sqldb.Queries) ([]sqldb.StageWorkersRow, error) {
	if lj.workers != nil {
		return lj.workers, nil
	}

	workers, err := q.StageWorkers(ctx, sqldb.StageWorkersParams{JobID: lj.row.ID, Stage: lj.row.Stage})
	if err != nil {
		return nil, fmt.Errorf("list stage workers: %w", err)
	}

	lj.workers = workers

	return workers, nil
}

// change runs fn in a transaction that first locks the job's row. For a
// job that is not active it returns job.ErrConflict when the job has
// ended and job.ErrNotFound when there never was one.
func (s *Store) change(ctx context.Context, id string,
	fn func(*sqldb.Queries, *lockedJob) (Next, error)) (Next, error) {
	var next Next
	err := s.inTx(ctx, func(q *sqldb.Queries) error {
		row, err := q.LockJob(ctx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return inactive(ctx, q, id)
		}

		if err != nil {
			return fmt.Errorf("lock job: %w", err)
		}

		next, err = fn(q, &lockedJob{row: row})

		return err
	})

	return next, err
}

// inactive tells a job that ended from one that never was.
func inactive(ctx context.Context, q *sqldb.Queries, id string) error {
	ended, err := q.HistoryHasJob(ctx, id)
	if err != nil {
		return fmt.Errorf("look up history: %w", err)
	}

	if ended {
		return job.ErrConflict
	}

	return job.ErrNotFound
}

// ignoreEnded treats a job that ended, or vanished, under a step as a step
// with nothing left to do.
func ignoreEnded(err error) error {
	if errors.Is(err, job.ErrConflict) || errors.Is(err, job.ErrNotFound) {
		return nil
	}

	return err
}

// applyResult matches a kept result to the running worker of its instance
// and applies it. A result of an instance with no running worker stays
// kept: its start may not be recorded yet.
func (s *Store) applyResult(ctx context.Context, q *sqldb.Queries, lj *lockedJob, instance string,
	outputs []byte) (Next, error) {
	if isEmptyList(outputs) {
		w, err := q.WorkerByInstance(ctx, sqldb.WorkerByInstanceParams{JobID: lj.row.ID, Instance: &instance})
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && w.State != "running") {
			return Next{}, nil
		}

		if err != nil {
			return Next{}, fmt.Errorf("find worker: %w", err)
		}

		return s.matchResult(ctx, q, lj, int(w.Stage), int(w.Idx), instance, outputs)
	}

	w, err := q.ReportRunningWorker(ctx, sqldb.ReportRunningWorkerParams{
		JobID: lj.row.ID, Instance: &instance, LeaseSeconds: s.opts.Lease.Seconds(), Owner: s.opts.Owner,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Next{}, nil
	}

	if err != nil {
		return Next{}, fmt.Errorf("record result: %w", err)
	}

	return Next{Workers: []WorkerTask{{
		JobID: lj.row.ID, Stage: int(w.Stage), Idx: int(w.Idx), State: "reported", Instance: instance,
	}}}, nil
}

func isEmptyList(outputs []byte) bool {
	return string(outputs) == "[]"
}

// matchResult applies a worker's result: an empty one fails the job;
// otherwise the worker is leased to the caller for removal. Its slot is
// handed on once it has been removed (see WorkerRemoved).
func (s *Store) matchResult(ctx context.Context, q *sqldb.Queries, lj *lockedJob, stage, idx int,
	instance string, outputs []byte) (Next, error) {
	if isEmptyList(outputs) {
		return s.end(ctx, q, lj, job.StatusFailed,
			fmt.Sprintf("worker %s of stage %d reported no results", instance, stage))
	}

	err := q.SetWorkerReported(ctx, sqldb.SetWorkerReportedParams{
		Owner: s.opts.Owner,
		JobID: lj.row.ID, Stage: int32(stage), Idx: int32(idx), LeaseSeconds: s.opts.Lease.Seconds(),
	})
	if err != nil {
		return Next{}, fmt.Errorf("record result: %w", err)
	}

	return Next{Workers: []WorkerTask{{
		JobID: lj.row.ID, Stage: stage, Idx: idx, State: "reported", Instance: instance,
	}}}, nil
}

// planWorkers records the workers of a stage and claims as many as may run
// at once for the caller to start.
func (s *Store) planWorkers(ctx context.Context, q *sqldb.Queries, lj *lockedJob, stage int,
	plan job.StageInputs) (Next, error) {
	worker := lj.pipeline.Stage(stage).Worker
	ds := job.DataSource{
		PlatformID:     deref(lj.doc.DsPlatformID),
		PlatformTypeID: deref(lj.doc.DsPlatformTypeID),
	}

	settings := s.opts.Start
	settings.CallbackURL += "/" + lj.row.ID

	var next Next
	for i, input := range plan.Workers {
		req := job.StartRequest(worker, input, ds, settings)
		claimed := i < s.opts.StageWorkers

		err := q.InsertWorker(ctx, sqldb.InsertWorkerParams{
			Owner: s.opts.Owner,
			JobID: lj.row.ID, Stage: int32(stage), Idx: int32(i), Request: req,
			Claimed: claimed, LeaseSeconds: s.opts.Lease.Seconds(),
		})
		if err != nil {
			return Next{}, fmt.Errorf("plan worker: %w", err)
		}

		if claimed {
			next.Workers = append(next.Workers, WorkerTask{
				JobID: lj.row.ID, Stage: stage, Idx: i, State: "starting", Request: req,
			})
		}
	}

	return next, nil
}

// completeStage writes the running stage into the document once all its
// workers are done, then plans the next stage or finishes the job.
func (s *Store) completeStage(ctx context.Context, q *sqldb.Queries, lj *lockedJob) (Next, error) {
	workers, err := lj.stageWorkers(ctx, q)
	if err != nil {
		return Next{}, err
	}

	waiting, complete := false, true
	for _, w := range workers {
		waiting = waiting || (w.State == "planned" && w.DueAt == nil)
		complete = complete && w.State == "done"
	}

	if waiting {
		// The removed worker's slot passes to the next planned one. The
		// slot is freed only now, not when the result arrived: until it
		// is removed the reported worker still runs on the platform, and
		// a stage never has more than StageWorkers alive.
		return s.claimNextPlanned(ctx, q, lj)
	}

	if !complete {
		return Next{}, nil
	}

	if err := lj.decode(); err != nil {
		return Next{}, err
	}

	stage := int(lj.row.Stage)
	record, err := stageRecord(lj.row, workers, time.Now())
	if err != nil {
		return Next{}, err
	}

	lj.doc.Stages[strconv.Itoa(stage)] = record
	if stage+1 == len(lj.pipeline.Stages) {
		return s.end(ctx, q, lj, job.StatusFinished, "")
	}

	plan, err := job.PlanStage(lj.pipeline.Stage(stage+1), record.Outputs)
	if err != nil {
		return s.end(ctx, q, lj, job.StatusFailed, fmt.Sprintf("stage %d: %v", stage+1, err))
	}

	doc, err := json.Marshal(lj.doc)
	if err != nil {
		return Next{}, fmt.Errorf("encode job: %w", err)
	}

	err = q.SetJobStage(ctx, sqldb.SetJobStageParams{
		ID: lj.row.ID, Doc: doc, Stage: int32(stage + 1), StageInputs: mustJSON(plan.Record),
		Started: record.Completed.Time,
	})
	if err != nil {
		return Next{}, fmt.Errorf("record stage: %w", err)
	}

	return s.planWorkers(ctx, q, lj, stage+1, plan)
}

// claimNextPlanned leases the running stage's next planned worker to the
// caller to start.
func (s *Store) claimNextPlanned(ctx context.Context, q *sqldb.Queries, lj *lockedJob) (Next, error) {
	planned, err := q.ClaimNextPlanned(ctx, sqldb.ClaimNextPlannedParams{
		Owner: s.opts.Owner,
		JobID: lj.row.ID, Stage: lj.row.Stage, MaxWorkers: 1, LeaseSeconds: s.opts.Lease.Seconds(),
	})
	if err != nil {
		return Next{}, fmt.Errorf("claim next worker: %w", err)
	}

	var next Next
	for _, p := range planned {
		next.Workers = append(next.Workers, workerTask(p))
	}

	return next, nil
}

// end gives a job its final status and moves it to history, in the
// caller's transaction. Workers still running are stopped and, unless
// told to keep them, the data-cache files the job's outputs name are
// deleted; both as chores leased to the caller.
func (s *Store) end(ctx context.Context, q *sqldb.Queries, lj *lockedJob, status job.Status,
	reason string) (Next, error) {
	if err := lj.decode(); err != nil {
		return Next{}, err
	}

	var workers []sqldb.StageWorkersRow
	if lj.row.Pipeline != nil {
		var err error
		if workers, err = lj.stageWorkers(ctx, q); err != nil {
			return Next{}, err
		}

		key := strconv.Itoa(int(lj.row.Stage))
		if _, written := lj.doc.Stages[key]; !written {
			record, err := stageRecord(lj.row, workers, time.Now())
			if err != nil {
				return Next{}, err
			}

			lj.doc.Stages[key] = record
		}
	}

	lj.doc.Status = status
	lj.doc.Reason = reason

	doc, err := json.Marshal(lj.doc)
	if err != nil {
		return Next{}, fmt.Errorf("encode job: %w", err)
	}

	n, err := q.EndJob(ctx, sqldb.EndJobParams{ID: lj.row.ID, Status: string(status), Doc: doc})
	if err != nil {
		return Next{}, fmt.Errorf("end job: %w", err)
	}

	if n != 1 {
		return Next{}, fmt.Errorf("end job %s: moved %d rows", lj.row.ID, n)
	}

	var kinds, targets []string
	for _, w := range workers {
		if w.Instance != nil && (w.State == "running" || w.State == "reported") {
			kinds, targets = append(kinds, ChoreStopWorker), append(targets, *w.Instance)
		}
	}

	if !s.opts.KeepFiles && lj.row.Pipeline != nil {
		for _, file := range job.OutputFiles(lj.pipeline, lj.doc) {
			kinds, targets = append(kinds, ChoreDeleteFile), append(targets, file)
		}
	}

	chores, err := s.addChores(ctx, q, lj.row.ID, kinds, targets)
	if err != nil {
		return Next{}, err
	}

	return Next{Ended: status, EndedJob: lj.row.ID, Reason: reason, Chores: chores}, nil
}

// stopInstance owes the platform a stop of an instance nothing tracks.
func (s *Store) stopInstance(ctx context.Context, q *sqldb.Queries, jobID, instance string) (Next, error) {
	if instance == "" {
		return Next{}, nil
	}

	chores, err := s.addChores(ctx, q, jobID, []string{ChoreStopWorker}, []string{instance})
	if err != nil {
		return Next{}, err
	}

	return Next{Chores: chores}, nil
}

// stopAfterEnd owes the platform a stop of a worker that started after
// its job ended.
func (s *Store) stopAfterEnd(ctx context.Context, jobID, instance string) (Next, error) {
	var next Next
	err := s.inTx(ctx, func(q *sqldb.Queries) error {
		var err error
		next, err = s.stopInstance(ctx, q, jobID, instance)

		return err
	})

	return next, err
}

// addChores owes the platform a batch of calls for a job, in one
// statement, leased to the caller.
func (s *Store) addChores(ctx context.Context, q *sqldb.Queries, jobID string,
	kinds, targets []string) ([]Chore, error) {
	if len(kinds) == 0 {
		return nil, nil
	}

	rows, err := q.InsertChores(ctx, sqldb.InsertChoresParams{
		JobID: jobID, Kinds: kinds, Targets: targets,
		LeaseSeconds: s.opts.Lease.Seconds(), Owner: s.opts.Owner,
	})
	if err != nil {
		return nil, fmt.Errorf("add chores: %w", err)
	}

	chores := make([]Chore, len(rows))
	for i, r := range rows {
		chores[i] = Chore{ID: r.ID, Kind: r.Kind, JobID: jobID, Target: r.Target, Attempts: 1}
	}

	return chores, nil
}

// stageRecord builds the document's record of the running stage from what
// its workers reported so far, in the order of their sources.
func stageRecord(row sqldb.LockJobRow, workers []sqldb.StageWorkersRow, now time.Time) (job.Stage, error) {
	record := job.Stage{
		Inputs:    []json.RawMessage{},
		Outputs:   []json.RawMessage{},
		Completed: job.NewTime(now),
	}

	if row.StageStarted != nil {
		record.Started = job.NewTime(*row.StageStarted)
	}

	if row.StageInputs != nil {
		if err := json.Unmarshal(row.StageInputs, &record.Inputs); err != nil {
			return job.Stage{}, fmt.Errorf("decode stage inputs: %w", err)
		}
	}

	var logs []string
	for _, w := range workers {
		if w.Outputs != nil && (w.State == "reported" || w.State == "done") {
			var outputs []json.RawMessage
			if err := json.Unmarshal(w.Outputs, &outputs); err != nil {
				return job.Stage{}, fmt.Errorf("decode result: %w", err)
			}

			record.Outputs = append(record.Outputs, outputs...)
		}

		if w.Log != nil && *w.Log != "" {
			logs = append(logs, *w.Log)
		}
	}

	record.Log = strings.Join(logs, "\n")

	return record, nil
}

func workerTask(r sqldb.ClaimNextPlannedRow) WorkerTask {
	return WorkerTask{
		JobID: r.JobID, Stage: int(r.Stage), Idx: int(r.Idx),
		State: r.State, Instance: deref(r.Instance), Request: r.Request,
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}

	return *s
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}

	return b
}
