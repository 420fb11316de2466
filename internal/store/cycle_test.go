package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/platformtest"
	"github.com/industrial-data/jobmanager/internal/store"
	"github.com/industrial-data/jobmanager/internal/testdb"
)

// allStages tells driver.run to let the workers of every stage report.
const allStages = math.MaxInt

// driver takes jobs through the store's transactions in the order the
// engine's steps would, on a fresh database. Its platform is imagined: every
// worker starts at once under a made-up instance id and reports at once what
// the example pipeline's worker would. No network call is made, so only the
// store is at work.
type driver struct {
	tb       testing.TB
	ctx      context.Context
	st       *store.Store
	ds       job.DataSource
	pipeline json.RawMessage
	files    int
}

func newDriver(tb testing.TB) *driver {
	tb.Helper()

	st := store.New(testdb.Pool(tb))
	st.SetOptions(store.Options{
		Lease:        30 * time.Second,
		Check:        5 * time.Second,
		StageWorkers: 1,
		Start: job.StartSettings{
			CallbackEnvVar: "JOB_CALLBACK_URL",
			CallbackURL:    "http://job-manager/jobs",
		},
		Owner: "replica-1",
	})

	return &driver{
		tb:  tb,
		ctx: context.Background(),
		st:  st,
		ds: job.DataSource{
			Name:           "energy",
			PipelineID:     "677f99d4-2ec7-450c-add2-8b7c5f7f171c",
			PlatformID:     "device:aeb83bf0-c50c-48e9-91b6-4db07c65c99c",
			PlatformTypeID: "device-type:c5940477-afe5-493c-9a9e-8043f8de7acd",
		},
		pipeline: platformtest.ExamplePipeline(),
	}
}

// submit adds a pending job for a new file and returns its id.
func (d *driver) submit() string {
	d.tb.Helper()

	d.files++
	req := job.NewJob{
		Hash:     fmt.Sprintf("%0128x", d.files),
		DsID:     "098z0g976gf76ftfj",
		FileName: platformtest.NewFileName(),
	}

	require.NoError(d.tb, d.st.CreateJob(d.ctx, req.ID(), job.New(req, time.Now())))

	return req.ID()
}

// claim starts the oldest pending job, with no cap on running jobs, and
// returns its id.
func (d *driver) claim() string {
	d.tb.Helper()

	ids, err := d.st.ClaimPending(d.ctx, math.MaxInt32)
	require.NoError(d.tb, err)
	require.Len(d.tb, ids, 1, "claimed jobs")

	return ids[0].ID
}

// run resolves a claimed job and carries out every worker step the
// store's transactions hand back until none is left. Workers of stage
// until and later start but do not report, so the job stays running
// there. It returns what the transaction that ended the job handed back,
// or an empty Next when the job did not end.
func (d *driver) run(id string, until int) store.Next {
	d.tb.Helper()

	next, err := d.st.Resolved(d.ctx, id, d.ds, d.pipeline)
	require.NoError(d.tb, err)

	var ended store.Next
	tasks := next.Workers
	for len(tasks) > 0 {
		next := d.step(tasks[0], until)
		tasks = append(tasks[1:], next.Workers...)

		if next.Ended != "" {
			ended = next
		}
	}

	return ended
}

// step carries out one claimed worker step: a start, followed by the
// worker's result unless its stage is held back, or a removal.
func (d *driver) step(t store.WorkerTask, until int) store.Next {
	d.tb.Helper()

	switch t.State {
	case "starting":
		instance := platformtest.NewFileName()
		next, err := d.st.WorkerStarted(d.ctx, t, instance, nil)
		require.NoError(d.tb, err)

		if t.Stage >= until {
			return next
		}

		results := map[string][]json.RawMessage{instance: d.outputs(t.Request)}
		reported, err := d.st.Report(d.ctx, t.JobID, results)
		require.NoError(d.tb, err)

		next.Workers = append(next.Workers, reported.Workers...)
		next.Chores = append(next.Chores, reported.Chores...)
		if reported.Ended != "" {
			next.Ended = reported.Ended
		}

		return next
	case "reported":
		next, err := d.st.WorkerRemoved(d.ctx, t, "removed "+t.Instance)
		require.NoError(d.tb, err)

		return next
	default:
		d.tb.Fatalf("worker step in state %q", t.State)

		return store.Next{}
	}
}

// outputs returns what the example pipeline's worker reports for a start
// request.
func (d *driver) outputs(request json.RawMessage) []json.RawMessage {
	d.tb.Helper()

	var req platformtest.StartRequest
	require.NoError(d.tb, json.Unmarshal(request, &req))

	raw, err := json.Marshal(platformtest.ExampleOutputs(req))
	require.NoError(d.tb, err)

	var outputs []json.RawMessage
	require.NoError(d.tb, json.Unmarshal(raw, &outputs))

	return outputs
}

func TestFullWorkerCycleFinishesTheJob(t *testing.T) {
	t.Parallel()

	d := newDriver(t)
	id := d.submit()
	require.Equal(t, id, d.claim())

	ended := d.run(id, allStages)

	require.Equal(t, job.StatusFinished, ended.Ended, "the last removal ends the job")
	assert.Len(t, ended.Chores, 2+len(platformtest.SensorTables),
		"a delete chore per file of the job's stages")

	active, err := d.st.ActiveJobs(d.ctx)
	require.NoError(t, err)
	assert.Empty(t, active)

	raw, err := d.st.HistoryJob(d.ctx, id)
	require.NoError(t, err)

	var doc job.Job
	require.NoError(t, json.Unmarshal(raw, &doc))

	assert.Equal(t, job.StatusFinished, doc.Status)
	require.NotNil(t, doc.PipelineID)
	assert.Equal(t, d.ds.PipelineID, *doc.PipelineID)
	require.Len(t, doc.Stages, 3)
	assert.Len(t, doc.Stages["2"].Outputs, len(platformtest.SensorTables))

	var first struct {
		CSVFile string `json:"csv_file"`
	}
	require.Len(t, doc.Stages["0"].Outputs, 1)
	require.NoError(t, json.Unmarshal(doc.Stages["0"].Outputs[0], &first))
	require.Len(t, doc.Stages["1"].Inputs, 1)
	assert.JSONEq(t, `{"input_csv": "`+first.CSVFile+`"}`, string(doc.Stages["1"].Inputs[0]),
		"stage 1 takes stage 0's output")

	for key, stage := range doc.Stages {
		assert.False(t, stage.Completed.Before(stage.Started.Time), "stage %s ends after it starts", key)
	}
}
