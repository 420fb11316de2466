package engine_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/platformtest"
)

var timestamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func TestExamplePipelineRunsToFinished(t *testing.T) {
	t.Parallel()
	s := setup(t, platformtest.ExampleWorkers, options{})
	s.platform.AddDataSource("098z0g976gf76ftfj", "677f99d4")
	s.platform.SetPipeline("677f99d4", platformtest.ExamplePipeline())

	id := s.submit("098z0g976gf76ftfj", "502a515f", "5c3759fed6c241db8728219cd650d9f1")
	doc := s.ended(id)

	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)
	assert.Equal(t, "677f99d4", *doc.PipelineID)
	assert.Equal(t, "device:098z0g976gf76ftfj", *doc.DsPlatformID)
	assert.Equal(t, "device-type:098z0g976gf76ftfj", *doc.DsPlatformTypeID)
	require.Len(t, doc.Stages, 3)

	assert.JSONEq(t, `{"xlsx_file":"5c3759fed6c241db8728219cd650d9f1"}`, string(doc.Stages["0"].Inputs[0]))
	require.Len(t, doc.Stages["0"].Outputs, 1)

	var out0, out1 map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(doc.Stages["0"].Outputs[0], &out0))
	assert.Equal(t, "123726", string(out0["line_count"]))
	assert.JSONEq(t, `{"input_csv":`+string(out0["csv_file"])+`}`, string(doc.Stages["1"].Inputs[0]))

	require.NoError(t, json.Unmarshal(doc.Stages["1"].Outputs[0], &out1))
	assert.JSONEq(t, `{"source_table":`+string(out1["output_csv"])+`}`, string(doc.Stages["2"].Inputs[0]))

	require.Len(t, doc.Stages["2"].Outputs, 14)
	for i, raw := range doc.Stages["2"].Outputs {
		var out map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(raw, &out))
		assert.Equal(t, `"`+platformtest.SensorTables[i]+`"`, string(out["unique_id"]))
		assert.Equal(t, `"6693"`, string(out["line_count"]), "strings stay strings")
	}

	for k, st := range doc.Stages {
		written, err := json.Marshal(st.Started)
		require.NoError(t, err)
		assert.Regexp(t, timestamp, strings.Trim(string(written), `"`), k)
		assert.False(t, st.Completed.Before(st.Started.Time), k)
		assert.Contains(t, st.Log, "ran", k)
	}

	assert.True(t, doc.Stages["1"].Started.After(doc.Stages["0"].Completed.Time) ||
		doc.Stages["1"].Started.Equal(doc.Stages["0"].Completed.Time))

	status, _ := s.get("/jobs/" + id)
	assert.Equal(t, http.StatusNotFound, status)

	instances := s.platform.Instances()
	require.Len(t, instances, 3)
	for _, inst := range instances {
		assert.True(t, inst.Removed(), inst.ID)
		req := inst.Request
		assert.Equal(t, "worker", req.Type)
		assert.Equal(t, "device:098z0g976gf76ftfj", req.Config("DS_PLATFORM_ID"))
		assert.Equal(t, "device-type:098z0g976gf76ftfj", req.Config("DS_PLATFORM_TYPE_ID"))
		assert.Equal(t, s.url+"/jobs/"+id, req.Config("JOB_CALLBACK_URL"))
		assert.Equal(t, `";"`, string(req.Configs["delimiter"]))
		assert.Equal(t, "/data_cache", req.DataCachePath)
	}
}

func TestOutputFilesAreDeletedWhenAJobEnds(t *testing.T) {
	t.Parallel()
	cache := t.TempDir()
	s := setup(t, platformtest.ExampleWorkers, options{dataCache: cache})
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", platformtest.ExamplePipeline())

	// The workers would have written these; create them when each starts.
	init := "init-upload"
	require.NoError(t, os.WriteFile(filepath.Join(cache, init), nil, 0o600))
	s.platform.OnStart = func(r platformtest.StartRequest) platformtest.Plan {
		outputs := platformtest.ExampleOutputs(r)
		raw, _ := json.Marshal(outputs)
		var list []map[string]any
		_ = json.Unmarshal(raw, &list)
		for _, o := range list {
			for _, field := range []string{"csv_file", "output_csv", "result_table"} {
				if name, ok := o[field].(string); ok {
					_ = os.WriteFile(filepath.Join(cache, name), nil, 0o600)
				}
			}
		}

		return platformtest.Plan{Outputs: outputs}
	}

	id := s.submit("ds", "h", init)
	doc := s.ended(id)
	require.Equal(t, job.StatusFinished, doc.Status, doc.Reason)

	s.eventually(func() bool {
		entries, err := os.ReadDir(cache)
		require.NoError(t, err)
		return len(entries) == 1
	}, "output files to be deleted")

	_, err := os.Stat(filepath.Join(cache, init))
	assert.NoError(t, err, "the init source is kept")
}
