package engine_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/platformtest"
)

func TestWorkerThatVanishesFailsItsJobAfterTwoFailedChecks(t *testing.T) {
	t.Parallel()
	const check = 100 * time.Millisecond
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		if r.Config("DS_PLATFORM_ID") == "device:vanish" {
			return platformtest.Plan{Stop: true}
		}

		// A slow worker outlives several checks and still reports.
		return platformtest.Plan{Outputs: []map[string]any{{"held": "slow"}}, Delay: 5 * check}
	}, options{check: check})
	s.platform.AddDataSource("vanish", "p")
	s.platform.AddDataSource("slow", "p")
	s.platform.SetPipeline("p", holdPipeline())

	vanish := s.submit("vanish", "h", "upload.xlsx")
	slow := s.submit("slow", "h", "upload.xlsx")

	doc := s.ended(vanish)
	require.Equal(t, job.StatusFailed, doc.Status)
	inst := s.instanceOf(vanish)
	assert.Contains(t, doc.Reason, inst.ID, "the reason names the worker")
	assert.Contains(t, doc.Reason, "stopped without results")
	assert.GreaterOrEqual(t, doc.Stages["0"].Completed.Sub(inst.Started), 2*check-time.Millisecond,
		"the job fails on the second failed check, not the first")
	s.eventually(inst.Removed, "the vanished worker to be removed")

	doc = s.ended(slow)
	assert.Equal(t, job.StatusFinished, doc.Status, "a worker that answers checks is left to finish: %s", doc.Reason)
}

func TestJobFailsWhenItsDataSourceOrPipelineCannotBeUsed(t *testing.T) {
	t.Parallel()
	s := setup(t, platformtest.ExampleWorkers, options{maxJobs: 20})

	s.platform.AddDataSource("ds-ok", "p-ok")
	s.platform.SetPipeline("p-ok", platformtest.ExamplePipeline())

	s.platform.AddDataSource("ds-failing", "p-ok")
	s.platform.FailRegistry("/machines/ds-failing", http.StatusInternalServerError)
	s.platform.SetDataSource("ds-no-pipeline-id", []byte(`{"name":"machine"}`))

	s.platform.AddDataSource("ds-missing-pipeline", "p-missing")
	s.platform.AddDataSource("ds-failing-pipeline", "p-failing")
	s.platform.SetPipeline("p-failing", platformtest.ExamplePipeline())
	s.platform.FailRegistry("/pipelines/p-failing", http.StatusInternalServerError)

	s.platform.AddDataSource("ds-malformed", "p-malformed")
	s.platform.SetPipeline("p-malformed", []byte(`{"name":"broken","stages":{"0":`))

	s.platform.AddDataSource("ds-input-type", "p-input-type")
	s.platform.SetPipeline("p-input-type", platformtest.Pipeline("batch", platformtest.StageSpec{
		Image: "xlsx-to-csv", InputType: "batch",
		InputMap: map[string]string{"xlsx_file": "init_source"},
		Outputs:  map[string]bool{"csv_file": true},
	}))

	s.platform.AddDataSource("ds-map-0", "p-map-0")
	s.platform.SetPipeline("p-map-0", platformtest.Pipeline("map-0", platformtest.StageSpec{
		Image: "xlsx-to-csv", InputType: "single",
		InputMap: map[string]string{"xlsx_file": "upload_name"},
		Outputs:  map[string]bool{"csv_file": true},
	}))

	s.platform.AddDataSource("ds-map-1", "p-map-1")
	s.platform.SetPipeline("p-map-1", platformtest.Pipeline("map-1",
		platformtest.StageSpec{
			Image: "xlsx-to-csv", InputType: "single",
			InputMap: map[string]string{"xlsx_file": "init_source"},
			Outputs:  map[string]bool{"csv_file": true, "line_count": false},
		},
		platformtest.StageSpec{
			Image: "trim", InputType: "single",
			InputMap: map[string]string{"input_csv": "tsv_file"},
			Outputs:  map[string]bool{"output_csv": true},
		},
	))

	cases := []struct {
		dsID string
		// reason holds words the failure reason must contain.
		reason []string
		// stages is how many stage records the failed job keeps: those
		// of the stages that started.
		stages int
	}{
		{dsID: "ds-unknown", reason: []string{"ds-unknown", "404"}},
		{dsID: "ds-failing", reason: []string{"ds-failing", "500"}},
		{dsID: "ds-no-pipeline-id", reason: []string{"pipeline_id"}},
		{dsID: "ds-missing-pipeline", reason: []string{"p-missing", "404"}},
		{dsID: "ds-failing-pipeline", reason: []string{"p-failing", "500"}},
		{dsID: "ds-malformed", reason: []string{"p-malformed", "JSON"}},
		{dsID: "ds-input-type", reason: []string{"p-input-type", "input type", "batch"}},
		{dsID: "ds-map-0", reason: []string{"stage 0", "upload_name"}},
		{dsID: "ds-map-1", reason: []string{"stage 1", "tsv_file"}, stages: 1},
	}

	ok := s.submit("ds-ok", "h", "upload.xlsx")
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = s.submit(c.dsID, "h", "upload.xlsx")
	}

	for i, c := range cases {
		doc := s.ended(ids[i])
		if !assert.Equal(t, job.StatusFailed, doc.Status, c.dsID) {
			continue
		}

		for _, word := range c.reason {
			assert.Contains(t, doc.Reason, word, c.dsID)
		}

		assert.Len(t, doc.Stages, c.stages, c.dsID)
		for k, st := range doc.Stages {
			assert.False(t, st.Started.IsZero(), "%s: stage %s has a start time", c.dsID, k)
		}
	}

	doc := s.ended(ok)
	assert.Equal(t, job.StatusFinished, doc.Status, "other jobs are unaffected: %s", doc.Reason)
	assert.Empty(t, doc.Reason)
}

func TestRefusedWorkerStartFailsTheJob(t *testing.T) {
	t.Parallel()
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		if r.Image == image("trim") {
			return platformtest.Plan{Refuse: true}
		}

		return platformtest.ExampleWorkers(r)
	}, options{})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", platformtest.ExamplePipeline())

	id := s.submit("ds", "h", "upload.xlsx")
	doc := s.ended(id)

	require.Equal(t, job.StatusFailed, doc.Status)
	assert.Contains(t, doc.Reason, "start worker 0 of stage 1")
	assert.Contains(t, doc.Reason, "500")
	assert.Len(t, doc.Stages["0"].Outputs, 1, "the completed stage is kept")
	assert.Empty(t, doc.Stages["1"].Outputs)
	assert.Len(t, s.platform.Instances(), 1, "only the first stage's worker ever ran")
}

func TestWorkerLogsAreKeptAsValidText(t *testing.T) {
	t.Parallel()
	s := setup(t, platformtest.ExampleWorkers, options{})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", platformtest.ExamplePipeline())
	s.platform.Log = func(*platformtest.Instance) string {
		return "hello\x00world \xff\xfe latin1:\xe9 done\n"
	}

	start := time.Now()
	doc := s.ended(s.submit("ds", "h", "upload.xlsx"))

	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)
	assert.Equal(t, "helloworld \uFFFD latin1:\uFFFD done\n", doc.Stages["0"].Log)
	assert.Less(t, time.Since(start), 10*time.Second, "no step waited for a lease to run out")
}

func TestAHungDeploymentManagerHoldsNoLockOnTheJob(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		<-release // the start request hangs until the test is done with the job
		return platformtest.ExampleWorkers(r)
	}, options{})
	t.Cleanup(func() { close(release) })
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", platformtest.ExamplePipeline())

	id := s.submit("ds", "h", "upload.xlsx")
	s.eventually(func() bool {
		return s.count("SELECT count(*) FROM workers WHERE job_id = $1 AND state = 'starting'", id) == 1
	}, "the start request to be out")

	// While the start request hangs, the job can be read, sent results
	// and aborted at once.
	active := s.active(id)
	assert.Equal(t, job.StatusRunning, active.Status)

	status, body := s.report(id, "unknown-instance", []map[string]any{{"x": 1}})
	assert.Equal(t, http.StatusOK, status, body)

	status, body = s.abort(id)
	require.Equal(t, http.StatusOK, status, body)
	assert.Equal(t, job.StatusAborted, s.ended(id).Status)
	assert.Empty(t, s.platform.Instances(), "the hung start has not returned yet")
}
