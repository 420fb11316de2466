package engine_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/platformtest"
)

// echoThenHold has a first stage whose worker reports one output and a
// second stage whose worker only reports when the test posts for it.
func echoThenHold() json.RawMessage {
	return platformtest.Pipeline("echo-hold",
		platformtest.StageSpec{
			Image: "echo", InputType: "single",
			InputMap: map[string]string{"upload": "init_source"},
			Outputs:  map[string]bool{"echoed": false},
		},
		platformtest.StageSpec{
			Image: "hold", InputType: "single",
			InputMap: map[string]string{"value": "echoed"},
			Outputs:  map[string]bool{"held": false},
		},
	)
}

func TestResultPostedBeforeTheStartAnswerIsMatched(t *testing.T) {
	t.Parallel()
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		return platformtest.Plan{Outputs: platformtest.ExampleOutputs(r), Early: true}
	}, options{})
	callbacks := s.recordCallbacks()
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", platformtest.ExamplePipeline())

	id := s.submit("ds", "h", "upload.xlsx")
	doc := s.ended(id)

	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)
	require.Len(t, doc.Stages, 3)
	assert.Len(t, doc.Stages["2"].Outputs, len(platformtest.SensorTables))
	assert.Equal(t, []int{200, 200, 200}, callbacks.answers(id), "every early result is accepted")
	for _, inst := range s.platform.Instances() {
		assert.True(t, inst.Removed(), inst.ID)
	}
}

func TestDuplicateResultCountsOnce(t *testing.T) {
	t.Parallel()
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		if r.Image == image("echo") {
			return platformtest.Plan{Outputs: []map[string]any{{"echoed": "once"}}, Twice: true}
		}

		return platformtest.Plan{}
	}, options{})
	callbacks := s.recordCallbacks()
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", echoThenHold())

	id := s.submit("ds", "h", "upload.xlsx")
	hold := s.awaitInstances(image("hold"), 1)[0]
	s.eventually(func() bool { return len(callbacks.answers(id)) == 2 }, "both deliveries to be answered")
	assert.Equal(t, []int{200, 200}, callbacks.answers(id), "a repeated delivery is not an error")

	echo := s.instances(image("echo"))[0]
	assert.Equal(t, 1, s.count(`SELECT count(*) FROM results WHERE job_id = $1 AND instance = $2`, id, echo.ID))
	assert.Equal(t, 1, s.count(`SELECT count(*) FROM results WHERE job_id = $1`, id))
	assert.JSONEq(t, `[{"echoed":"once"}]`, string(mustJSON(t, s.active(id).Stages["0"].Outputs)),
		"the record of stage 0 when stage 1 started")

	status, body := s.report(id, hold.ID, map[string]any{"held": "ok"})
	require.Equal(t, http.StatusOK, status, body)

	doc := s.ended(id)
	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)
	assert.Equal(t, quoted("once"), field(t, doc.Stages["0"].Outputs, "echoed"), "outputs are not doubled")
	assert.Len(t, doc.Stages["1"].Inputs, 1, "the next stage runs once for the one output")
	assert.Len(t, s.instances(image("hold")), 1)
}

func TestConcurrentResultsOfOneStageAreEachAppliedOnce(t *testing.T) {
	t.Parallel()
	const sources = 14
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		if r.Image == image("split") {
			return platformtest.Plan{Outputs: parts(sources)}
		}

		return platformtest.Plan{}
	}, options{stageWorkers: sources})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", splitPipeline("single"))

	id := s.submit("ds", "h", "upload.xlsx")
	loads := s.awaitInstances(image("load"), sources)

	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		statuses = make([]int, sources)
		errs     = make([]error, sources)
	)
	for i, inst := range loads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start

			body := fmt.Sprintf(`{%q:[{"loaded":%q}]}`, inst.ID, inst.Request.Input("source_table"))
			statuses[i], errs[i] = postStatus(s.url+"/jobs/"+id, body)
		}()
	}

	close(start)
	wg.Wait()

	for i := range loads {
		require.NoError(t, errs[i])
		assert.Equal(t, http.StatusOK, statuses[i], loads[i].ID)
	}

	doc := s.ended(id)
	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)

	want := make([]string, sources)
	for i := range want {
		want[i] = partName(i)
	}

	assert.Equal(t, quoted(want...), field(t, doc.Stages["1"].Outputs, "loaded"), "each output once, in source order")
	for _, inst := range loads {
		assert.True(t, inst.Removed(), inst.ID)
	}
}

func TestEmptyResultListFailsTheJob(t *testing.T) {
	t.Parallel()
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		return platformtest.Plan{Outputs: []map[string]any{}}
	}, options{})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", platformtest.ExamplePipeline())

	id := s.submit("ds", "h", "upload.xlsx")
	doc := s.ended(id)

	require.Equal(t, job.StatusFailed, doc.Status)
	inst := s.platform.Instances()
	require.Len(t, inst, 1, "no later stage starts")
	assert.Contains(t, doc.Reason, inst[0].ID)
	assert.Contains(t, doc.Reason, "no results")
	assert.Empty(t, doc.Stages["0"].Outputs)
	s.eventually(inst[0].Removed, "the worker to be removed")
}

func TestOutputValuesAreKeptExactlyAsReported(t *testing.T) {
	t.Parallel()
	const reported = `{"line_count":"6693","n":123726,"big":1234567890123456789}`
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		if r.Image == image("echo") {
			return platformtest.Plan{Outputs: []json.RawMessage{json.RawMessage(reported)}}
		}

		return platformtest.Plan{Outputs: []json.RawMessage{json.RawMessage(`{"held":0.10}`)}}
	}, options{})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", platformtest.Pipeline("exact",
		platformtest.StageSpec{
			Image: "echo", InputType: "single",
			InputMap: map[string]string{"upload": "init_source"},
			Outputs:  map[string]bool{"line_count": false, "n": false, "big": false},
		},
		platformtest.StageSpec{
			Image: "hold", InputType: "single",
			InputMap: map[string]string{"count": "line_count", "big": "big"},
			Outputs:  map[string]bool{"held": false},
		},
	))

	id := s.submit("ds", "h", "upload.xlsx")
	doc := s.ended(id)
	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)

	outputs := doc.Stages["0"].Outputs
	require.Len(t, outputs, 1)
	assert.Equal(t, `"6693"`, field(t, outputs, "line_count")[0])
	assert.Equal(t, `123726`, field(t, outputs, "n")[0])
	assert.Equal(t, `1234567890123456789`, field(t, outputs, "big")[0])
	assert.Equal(t, `0.10`, field(t, doc.Stages["1"].Outputs, "held")[0])

	// The values travel on to the next stage's worker unchanged too.
	hold := s.instances(image("hold"))
	require.Len(t, hold, 1)
	assert.Equal(t, `"6693"`, string(hold[0].Request.Inputs["count"]))
	assert.Equal(t, `1234567890123456789`, string(hold[0].Request.Inputs["big"]))
	assert.Equal(t, `1234567890123456789`, field(t, doc.Stages["1"].Inputs, "big")[0])
}

func TestAnEmptyResultAmongSeveralInOnePostFailsTheJob(t *testing.T) {
	t.Parallel()
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		if r.Image == image("fan") {
			return platformtest.Plan{Outputs: []map[string]any{{"part": "a"}, {"part": "b"}}}
		}

		return platformtest.Plan{} // the leaves report only when the test says
	}, options{stageWorkers: 2})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", platformtest.Pipeline("fan-out",
		platformtest.StageSpec{
			Image: "fan", InputType: "single",
			InputMap: map[string]string{"upload": "init_source"},
			Outputs:  map[string]bool{"part": false},
		},
		platformtest.StageSpec{
			Image: "leaf", InputType: "single",
			InputMap: map[string]string{"part": "part"},
			Outputs:  map[string]bool{"x": false},
		},
	))

	id := s.submit("ds", "h", "upload")
	s.eventually(func() bool {
		return s.count("SELECT count(*) FROM workers WHERE job_id = $1 AND stage = 1 AND state = 'running'", id) == 2
	}, "both leaves to run")

	leaves := s.platform.Instances()[1:]
	first, second := leaves[0].ID, leaves[1].ID
	if second < first {
		first, second = second, first
	}

	// The empty result sorts first, so it ends the job before the other
	// result of the same post is looked at.
	status, body := s.post("/jobs/"+id, `{"`+first+`":[],"`+second+`":[{"x":1}]}`)
	require.Equal(t, http.StatusOK, status, body)

	doc := s.ended(id)
	assert.Equal(t, job.StatusFailed, doc.Status)
	assert.Contains(t, doc.Reason, first)
}
