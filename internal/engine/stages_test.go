package engine_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/platformtest"
)

// splitPipeline has a first stage that splits the upload into parts and a
// second stage that takes the parts with the given input type.
func splitPipeline(inputType string) json.RawMessage {
	return platformtest.Pipeline("parts",
		platformtest.StageSpec{
			Image: "split", InputType: "single",
			InputMap: map[string]string{"upload": "init_source"},
			Outputs:  map[string]bool{"part": false},
		},
		platformtest.StageSpec{
			Image: "load", InputType: inputType,
			InputMap: map[string]string{"source_table": "part"},
			Outputs:  map[string]bool{"loaded": false},
		},
	)
}

// parts returns what the split worker reports: n outputs naming parts.
func parts(n int) []map[string]any {
	outputs := make([]map[string]any, n)
	for i := range outputs {
		outputs[i] = map[string]any{"part": partName(i)}
	}

	return outputs
}

func partName(i int) string {
	return fmt.Sprintf("part-%02d", i)
}

func TestMultipleInputStageRunsOneWorkerWithPrefixedInputs(t *testing.T) {
	t.Parallel()
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		if r.Image == image("split") {
			return platformtest.Plan{Outputs: parts(3)}
		}

		return platformtest.Plan{Outputs: []map[string]any{{"loaded": "all"}}}
	}, options{stageWorkers: 4})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", splitPipeline("multiple"))

	id := s.submit("ds", "h", "upload.xlsx")
	doc := s.ended(id)
	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)

	loads := s.instances(image("load"))
	require.Len(t, loads, 1, "a multiple-input stage runs one worker")
	assert.JSONEq(t, `{"_0_source_table":"part-00","_1_source_table":"part-01","_2_source_table":"part-02"}`,
		string(mustJSON(t, loads[0].Request.Inputs)))

	stage := doc.Stages["1"]
	require.Len(t, stage.Inputs, 3, "one input entry per source")
	for i, raw := range stage.Inputs {
		assert.JSONEq(t, fmt.Sprintf(`{"_%d_source_table":%q}`, i, partName(i)), string(raw))
	}

	assert.Equal(t, quoted("all"), field(t, stage.Outputs, "loaded"))
}

func TestSingleInputStageRunsAWorkerPerSourceWithinTheLimitAndKeepsSourceOrder(t *testing.T) {
	t.Parallel()
	const (
		sources = 14
		limit   = 4
	)

	var (
		ref   platformRef
		most  peak
		delay = func(i int) time.Duration {
			// Later parts finish first, so completion order is not
			// source order.
			return time.Duration((sources-i)%5) * 15 * time.Millisecond
		}
	)
	s := setup(t, func(r platformtest.StartRequest) platformtest.Plan {
		if r.Image == image("split") {
			return platformtest.Plan{Outputs: parts(sources)}
		}

		// This instance is not registered yet: count it on top.
		most.see(ref.alive(image("load")) + 1)

		var i int
		_, err := fmt.Sscanf(r.Input("source_table"), "part-%d", &i)
		if err != nil {
			return platformtest.Plan{Refuse: true}
		}

		return platformtest.Plan{
			Outputs: []map[string]any{{"loaded": r.Input("source_table")}},
			Delay:   delay(i),
		}
	}, options{stageWorkers: limit})
	ref.p.Store(s.platform)
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", splitPipeline("single"))

	id := s.submit("ds", "h", "upload.xlsx")
	doc := s.ended(id)
	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)

	assert.Len(t, s.instances(image("load")), sources, "one worker per source")
	assert.LessOrEqual(t, most.get(), limit, "workers of the stage alive at once")
	assert.Equal(t, limit, most.get(), "the stage uses every slot it has")

	want := make([]string, sources)
	for i := range want {
		want[i] = partName(i)
	}

	stage := doc.Stages["1"]
	require.Len(t, stage.Inputs, sources)
	for i, raw := range stage.Inputs {
		assert.JSONEq(t, fmt.Sprintf(`{"source_table":%q}`, partName(i)), string(raw))
	}

	assert.Equal(t, quoted(want...), field(t, stage.Outputs, "loaded"), "outputs in source order")
}
