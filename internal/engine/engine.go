// Package engine runs jobs: it claims pending jobs, resolves their
// pipelines, starts and watches workers, applies their results and ends
// jobs. Every step is claimed from the database with a lease, so any
// replica can carry on the work of one that died.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/metrics"
	"github.com/industrial-data/jobmanager/internal/store"
)

// Registry looks up data sources and pipelines.
type Registry interface {
	DataSource(ctx context.Context, dsID string) (job.DataSource, error)
	Pipeline(ctx context.Context, id string) (json.RawMessage, error)
}

// Launcher starts, watches and removes workers.
type Launcher interface {
	// Start starts a worker and returns its instance id.
	Start(ctx context.Context, request json.RawMessage) (string, error)
	// Alive reports whether an instance still runs.
	Alive(ctx context.Context, instance string) (bool, error)
	// Log returns what an instance wrote.
	Log(ctx context.Context, instance string) (string, error)
	// Remove stops an instance and removes it.
	Remove(ctx context.Context, instance string) error
}

// Options tune the engine.
type Options struct {
	// MaxJobs caps the jobs running at once across every replica.
	MaxJobs int
	// Poll is how often the database is asked for due work.
	Poll time.Duration
	// DataCache is the directory whose files the workers read and write.
	DataCache string
	// ChoreAttempts is how often a chore is tried before it is given up.
	ChoreAttempts int
	// StepTimeout bounds one step; it should not exceed the lease, after
	// which another replica may take the step over.
	StepTimeout time.Duration
	// Metrics records the engine's work; nil records nothing.
	Metrics *metrics.Metrics
}

// Engine runs jobs.
type Engine struct {
	store    *store.Store
	registry Registry
	launcher Launcher
	logger   *slog.Logger
	opts     Options

	kick  chan struct{}
	steps sync.WaitGroup
	// stepCtx is the root of every step's context; abandon cancels it.
	stepCtx context.Context
	abandon context.CancelFunc
}

// New returns an engine. It does nothing until Run is called, but jobs can
// be submitted and commanded before.
func New(s *store.Store, registry Registry, launcher Launcher, logger *slog.Logger, opts Options) *Engine {
	if opts.ChoreAttempts < 1 {
		opts.ChoreAttempts = 5
	}

	stepCtx, abandon := context.WithCancel(context.Background())

	return &Engine{
		store:    s,
		registry: registry,
		launcher: launcher,
		logger:   logger,
		opts:     opts,
		kick:     make(chan struct{}, 1),
		stepCtx:  stepCtx,
		abandon:  abandon,
	}
}

// Submit adds a pending job and returns its id. The id is returned with
// job.ErrConflict too, when a job with that id is already active.
func (e *Engine) Submit(ctx context.Context, req job.NewJob) (string, error) {
	id := req.ID()
	if err := e.store.CreateJob(ctx, id, job.New(req, time.Now())); err != nil {
		return id, fmt.Errorf("submit job %s: %w", id, err)
	}

	e.Kick()

	return id, nil
}

// Command aborts a job or applies workers' results to it.
func (e *Engine) Command(ctx context.Context, id string, cmd job.Command) error {
	var (
		next store.Next
		err  error
	)
	if cmd.Abort {
		next, err = e.store.Abort(ctx, id, e.liveLogs(ctx, id))
	} else {
		next, err = e.store.Report(ctx, id, cmd.Results)
	}

	if err != nil {
		return fmt.Errorf("command job %s: %w", id, err)
	}

	e.opts.Metrics.ResultsAccepted(next.Kept)

	e.follow(next)

	return nil
}

// liveLogs fetches the logs of a job's workers that still run, for an
// abort to keep: once stopped, a worker's log may be gone. A log that
// cannot be had is left out; the abort goes on.
func (e *Engine) liveLogs(ctx context.Context, id string) map[string]string {
	instances, err := e.store.LiveInstances(ctx, id)
	if err != nil || len(instances) == 0 {
		return nil
	}

	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		logs = make(map[string]string, len(instances))
	)
	for _, instance := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()

			text, err := e.launcher.Log(ctx, instance)
			if err != nil {
				return
			}

			mu.Lock()
			logs[instance] = cleanLog(text)
			mu.Unlock()
		}()
	}

	wg.Wait()

	return logs
}

// ActiveJobs returns every pending or running job, oldest first.
func (e *Engine) ActiveJobs(ctx context.Context) ([]job.Document, error) {
	return e.store.ActiveJobs(ctx)
}

// ActiveJob returns a pending or running job.
func (e *Engine) ActiveJob(ctx context.Context, id string) (json.RawMessage, error) {
	return e.store.ActiveJob(ctx, id)
}

// History returns the latest run of every ended job, oldest first.
func (e *Engine) History(ctx context.Context) ([]job.Document, error) {
	return e.store.History(ctx)
}

// HistoryJob returns the latest run of an ended job.
func (e *Engine) HistoryJob(ctx context.Context, id string) (json.RawMessage, error) {
	return e.store.HistoryJob(ctx, id)
}

// Kick asks the engine to look for pending jobs now rather than at its
// next poll.
func (e *Engine) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run claims work until ctx ends. The steps it started go on; Drain
// waits for them.
func (e *Engine) Run(ctx context.Context) {
	ticker := time.NewTicker(e.opts.Poll)
	defer ticker.Stop()

	e.claimDue(ctx)
	for {
		e.claimPending(ctx)

		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		case <-ticker.C:
			e.claimDue(ctx)
		}
	}
}

// Drain waits for the steps under way to finish. When ctx ends first it
// abandons them, and once they have returned it hands back every lease
// this replica holds, so that other replicas take its work over at once
// rather than when the leases run out.
func (e *Engine) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		e.steps.Wait()
		close(done)
	}()

	select {
	case <-done:
	case <-ctx.Done():
		e.logger.Warn("abandoning steps under way")
		e.abandon()
		<-done
	}

	release, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if err := e.store.ReleaseLeases(release); err != nil {
		return fmt.Errorf("hand back leases: %w", err)
	}

	return nil
}

// claimPending starts pending jobs while there is room.
func (e *Engine) claimPending(ctx context.Context) {
	claimed, err := e.store.ClaimPending(ctx, e.opts.MaxJobs)
	if err != nil {
		if ctx.Err() == nil {
			e.logger.Error("claim pending jobs", slog.String("err", err.Error()))
		}

		return
	}

	for _, c := range claimed {
		e.logger.Info("job started", slog.String("job_id", c.ID))
		e.spawn(func(ctx context.Context) { e.resolve(ctx, c) })
	}
}

// claimDue takes over work that is due: checks of running workers, and
// steps whose lease ran out because the replica holding them died.
func (e *Engine) claimDue(ctx context.Context) {
	const batch = 100

	claimed, next, err := e.store.ClaimDue(ctx, batch)
	if err != nil {
		if ctx.Err() == nil {
			e.logger.Error("claim due work", slog.String("err", err.Error()))
		}

		return
	}

	for _, c := range claimed {
		e.spawn(func(ctx context.Context) { e.resolve(ctx, c) })
	}

	e.follow(next)
}

// follow carries out the steps a transaction claimed for this replica.
func (e *Engine) follow(next store.Next) {
	for _, t := range next.Workers {
		e.spawn(func(ctx context.Context) { e.workerStep(ctx, t) })
	}

	if len(next.Chores) > 0 {
		e.spawn(func(ctx context.Context) { e.chores(ctx, next.Chores) })
	}

	if next.Ended != "" {
		level := slog.LevelInfo
		if next.Ended == job.StatusFailed {
			level = slog.LevelWarn
		}

		e.logger.Log(context.Background(), level, "job ended", slog.String("job_id", next.EndedJob),
			slog.String("status", string(next.Ended)), slog.String("reason", next.Reason))
		e.opts.Metrics.JobEnded(string(next.Ended))
		e.Kick()
	}
}

// spawn runs a step in its own goroutine. Steps outlive the request or
// poll that claimed them: they finish even while the replica shuts down.
func (e *Engine) spawn(step func(ctx context.Context)) {
	e.steps.Add(1)
	go func() {
		defer e.steps.Done()

		ctx, cancel := context.WithTimeout(e.stepCtx, e.opts.StepTimeout)
		defer cancel()

		step(ctx)
	}()
}

// resolve fetches a running job's data source and pipeline and records
// them. A registry that cannot answer fails the job.
func (e *Engine) resolve(ctx context.Context, c store.Claimed) {
	log := e.logger.With(slog.String("job_id", c.ID))

	start := time.Now()
	next, err := e.resolveJob(ctx, c.ID, c.DsID)
	e.opts.Metrics.Step("resolve", start, err != nil)
	if err != nil {
		log.Error("resolve job", slog.String("err", err.Error()))
		return
	}

	e.follow(next)
}

func (e *Engine) resolveJob(ctx context.Context, id, dsID string) (store.Next, error) {
	ds, err := e.registry.DataSource(ctx, dsID)
	if e.abandoned() {
		return store.Next{}, nil
	}

	if err != nil {
		return e.store.Fail(ctx, id, err.Error())
	}

	pipeline, err := e.registry.Pipeline(ctx, ds.PipelineID)
	if e.abandoned() {
		return store.Next{}, nil
	}

	if err != nil {
		return e.store.FailResolving(ctx, id, ds, err.Error())
	}

	return e.store.Resolved(ctx, id, ds, pipeline)
}

// stepNames name worker steps, by the state they start from, in metrics.
var stepNames = map[string]string{"starting": "start", "running": "check", "reported": "remove"}

// workerStep carries out a claimed step of one worker.
func (e *Engine) workerStep(ctx context.Context, t store.WorkerTask) {
	log := e.logger.With(slog.String("job_id", t.JobID), slog.Int("stage", t.Stage),
		slog.String("instance", t.Instance))

	var (
		next  store.Next
		err   error
		start = time.Now()
	)
	defer func() { e.opts.Metrics.Step(stepNames[t.State], start, err != nil) }()

	switch t.State {
	case "starting":
		instance, startErr := e.launcher.Start(ctx, t.Request)
		if e.abandoned() {
			return
		}

		if startErr != nil {
			log.Warn("worker did not start", slog.String("err", startErr.Error()))
		}

		next, err = e.store.WorkerStarted(ctx, t, instance, startErr)
	case "running":
		alive, checkErr := e.launcher.Alive(ctx, t.Instance)
		if e.abandoned() {
			return
		}

		if checkErr != nil {
			log.Warn("check worker", slog.String("err", checkErr.Error()))
		}

		var text string
		if !alive {
			// A worker that quit without a result may have said why.
			text, _ = e.launcher.Log(ctx, t.Instance)
		}

		next, err = e.store.WorkerChecked(ctx, t, alive, cleanLog(text))
	case "reported":
		next, err = e.store.WorkerRemoved(ctx, t, e.remove(ctx, log, t.Instance))
	default:
		err = fmt.Errorf("worker in state %q has no step", t.State)
	}

	if err != nil {
		log.Error("worker step", slog.String("state", t.State), slog.String("err", err.Error()))
		return
	}

	e.follow(next)
}

// abandoned reports whether the replica gave up its steps while stopping.
// A call that failed then says nothing of the peer, so its outcome is not
// recorded; the step's lease is handed back and another replica redoes it.
func (e *Engine) abandoned() bool {
	return e.stepCtx.Err() != nil
}

// remove fetches a reported worker's log and removes the worker. A log
// that cannot be fetched does not hold the job up; the failure is logged
// and noted in place of the log.
func (e *Engine) remove(ctx context.Context, log *slog.Logger, instance string) string {
	text, err := e.launcher.Log(ctx, instance)
	if err != nil {
		log.Warn("get worker log", slog.String("err", err.Error()))
		text = fmt.Sprintf("(the worker's log could not be fetched: %v)\n", err)
	}

	if err := e.launcher.Remove(ctx, instance); err != nil {
		log.Warn("remove worker", slog.String("err", err.Error()))
	}

	return cleanLog(text)
}

// maxLog is the most of a worker's log a stage keeps: the end of it,
// where errors usually are.
const maxLog = 1 << 20

// cleanLog makes a worker's log storable as text: NUL characters out,
// bytes that are not UTF-8 replaced, and only the last maxLog bytes kept.
func cleanLog(text string) string {
	if len(text) > maxLog {
		text = text[len(text)-maxLog:]
	}

	return strings.ToValidUTF8(strings.ReplaceAll(text, "\x00", ""), "\uFFFD")
}

// chores carries out calls owed after jobs ended, then forgets in one
// statement those that were done or given up. A failed chore falls due
// again when its lease runs out, until it has been tried often enough.
func (e *Engine) chores(ctx context.Context, chores []store.Chore) {
	done := make([]int64, 0, len(chores))
	for _, c := range chores {
		log := e.logger.With(slog.String("job_id", c.JobID), slog.String("chore", c.Kind),
			slog.String("target", c.Target))

		err := e.chore(ctx, c)
		if err != nil && c.Attempts < e.opts.ChoreAttempts {
			log.Warn("chore failed, will retry", slog.Int("attempts", c.Attempts), slog.String("err", err.Error()))
			continue
		}

		if err != nil {
			log.Error("chore given up", slog.Int("attempts", c.Attempts), slog.String("err", err.Error()))
		}

		done = append(done, c.ID)
	}

	if err := e.store.ChoresDone(ctx, done); err != nil {
		e.logger.Error("forget chores", slog.String("err", err.Error()))
	}
}

// chore makes one call owed after a job ended.
func (e *Engine) chore(ctx context.Context, c store.Chore) error {
	switch c.Kind {
	case store.ChoreStopWorker:
		return e.launcher.Remove(ctx, c.Target)
	case store.ChoreDeleteFile:
		err := os.Remove(filepath.Join(e.opts.DataCache, c.Target))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}

		return err
	default:
		return fmt.Errorf("unknown chore kind %q", c.Kind)
	}
}
