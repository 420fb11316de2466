package job_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
)

// splitWorker takes one file per run and reports tables, one of them a
// count that is not a file.
const splitWorker = `{
	"id": "w-split", "name": "split", "image": "registry/split:1.0",
	"data_cache_path": "/data_cache", "description": "splits a file",
	"configs": {"CHUNK": "100", "VERBOSE": true},
	"input": {"type": "single", "fields": ["file"]},
	"output": {"type": "multiple", "fields": [
		{"name": "table", "media_type": "text/csv", "is_file": true},
		{"name": "line_count", "media_type": "text/plain", "is_file": false}
	]}
}`

// mergeWorker takes every table of the stage before at once.
const mergeWorker = `{
	"id": 17, "name": "merge", "image": "registry/merge:2.1",
	"data_cache_path": "/cache", "description": "merges tables",
	"configs": {},
	"input": {"type": "multiple", "fields": ["source_table"]},
	"output": {"type": "single", "fields": [
		{"name": "report", "media_type": "application/pdf", "is_file": true},
		{"name": "summary", "media_type": "text/plain"}
	]}
}`

const goodPipeline = `{
	"name": "split and merge",
	"stages": {
		"0": {"worker": ` + splitWorker + `, "description": "split",
			"input_map": {"file": "init_source"}},
		"1": {"worker": ` + mergeWorker + `, "description": "merge",
			"input_map": {"source_table": "table", "count": "line_count"}}
	}
}`

func parsePipeline(t *testing.T) job.Pipeline {
	t.Helper()

	p, err := job.ParsePipeline([]byte(goodPipeline))
	require.NoError(t, err)

	return p
}

func raws(items ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(items))
	for i, item := range items {
		out[i] = json.RawMessage(item)
	}

	return out
}

func TestParsePipelineAcceptsRunnablePipeline(t *testing.T) {
	t.Parallel()

	p := parsePipeline(t)

	assert.Equal(t, "split and merge", p.Name)
	require.Len(t, p.Stages, 2)

	first := p.Stage(0)
	assert.Equal(t, job.InputSingle, first.Worker.Input.Type)
	assert.Equal(t, map[string]string{"file": "init_source"}, first.InputMap)
	assert.Equal(t, "split", first.Description)
	assert.JSONEq(t, `"registry/split:1.0"`, string(first.Worker.Image))
	assert.Equal(t, []job.OutputField{
		{Name: "table", MediaType: "text/csv", IsFile: true},
		{Name: "line_count", MediaType: "text/plain", IsFile: false},
	}, first.Worker.Output.Fields)

	second := p.Stage(1)
	assert.Equal(t, job.InputMultiple, second.Worker.Input.Type)
	assert.Equal(t, "17", string(second.Worker.ID))
	assert.Equal(t, map[string]string{"source_table": "table", "count": "line_count"},
		second.InputMap)
}

func TestParsePipelineRejectsPipelineThatCannotRun(t *testing.T) {
	t.Parallel()

	stage := func(inputType string) string {
		return `{"worker": {"image": "img", "input": {"type": "` + inputType + `"}},
			"input_map": {}}`
	}

	tests := []struct {
		name string
		body string
	}{
		{name: "empty body", body: ``},
		{name: "malformed JSON", body: `{"name": "p", "stages": {"0": `},
		{name: "not JSON", body: `<html>502 Bad Gateway</html>`},
		{name: "array", body: `[` + stage("single") + `]`},
		{name: "null", body: `null`},
		{name: "stages a list", body: `{"stages": [` + stage("single") + `]}`},
		{name: "no stages key", body: `{"name": "p"}`},
		{name: "empty stages", body: `{"name": "p", "stages": {}}`},
		{name: "null stages", body: `{"name": "p", "stages": null}`},
		{name: "gap in numbering", body: `{"stages": {"0": ` + stage("single") +
			`, "2": ` + stage("single") + `}}`},
		{name: "numbering from 1", body: `{"stages": {"1": ` + stage("single") + `}}`},
		{name: "non-numeric key", body: `{"stages": {"0": ` + stage("single") +
			`, "next": ` + stage("single") + `}}`},
		{name: "unknown input type", body: `{"stages": {"0": ` + stage("batch") + `}}`},
		{name: "unknown type in later stage", body: `{"stages": {"0": ` + stage("single") +
			`, "1": ` + stage("Single") + `}}`},
		{name: "missing input type",
			body: `{"stages": {"0": {"worker": {"image": "img"}, "input_map": {}}}}`},
		{name: "missing image",
			body: `{"stages": {"0": {"worker": {"input": {"type": "single"}}}}}`},
		{name: "input_map not strings", body: `{"stages": {"0": {"worker": {"image": "img",
			"input": {"type": "single"}}, "input_map": {"file": 1}}}}`},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			_, err := job.ParsePipeline([]byte(tt.body))

			require.ErrorIs(t, err, job.ErrBadPipeline)
		})
	}
}

func TestParseDataSourceReadsRegistryAnswer(t *testing.T) {
	t.Parallel()

	got, err := job.ParseDataSource([]byte(`{"name": "press 4", "pipeline_id": "p-1",
		"platform_id": "plat-1", "platform_type_id": "type-1", "location": "hall 2"}`))

	require.NoError(t, err)
	assert.Equal(t, job.DataSource{
		Name: "press 4", PipelineID: "p-1", PlatformID: "plat-1", PlatformTypeID: "type-1",
	}, got)
}

func TestParseDataSourceRejectsUnusableAnswer(t *testing.T) {
	t.Parallel()

	tests := map[string]string{
		"malformed JSON":      `{"pipeline_id": "p-1"`,
		"not JSON":            `not found`,
		"null":                `null`,
		"array":               `[{"pipeline_id": "p-1"}]`,
		"missing pipeline_id": `{"name": "press 4", "platform_id": "plat-1"}`,
		"empty pipeline_id":   `{"pipeline_id": ""}`,
		"null pipeline_id":    `{"pipeline_id": null}`,
		"numeric pipeline_id": `{"pipeline_id": 7}`,
	}

	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()

			_, err := job.ParseDataSource([]byte(body))

			require.ErrorIs(t, err, job.ErrBadPipeline)
		})
	}
}

func TestInitSourceListFeedsStageZero(t *testing.T) {
	t.Parallel()

	doc := job.New(job.NewJob{Hash: "h", DsID: "ds", FileName: "upload.csv"}, time.Now())
	sources := job.InitSourceList(doc)

	require.Len(t, sources, 1)
	assert.JSONEq(t, `{"init_source": "upload.csv"}`, string(sources[0]))

	plan, err := job.PlanStage(parsePipeline(t).Stage(0), sources)

	require.NoError(t, err)
	require.Len(t, plan.Workers, 1)
	assert.JSONEq(t, `{"file": "upload.csv"}`, string(plan.Workers[0]))
	assert.Equal(t, plan.Workers, plan.Record)
}

func TestPlanStageSingleInputRunsOneWorkerPerSource(t *testing.T) {
	t.Parallel()

	stage := parsePipeline(t).Stage(1)
	stage.Worker.Input.Type = job.InputSingle

	sources := raws(
		`{"table": "a.csv", "line_count": "6693", "other": 1}`,
		`{"table": "b.csv", "line_count": 123726}`,
		`{"table": "c.csv", "line_count": 1234567890123456789}`,
	)

	plan, err := job.PlanStage(stage, sources)
	require.NoError(t, err)

	want := []string{
		`{"source_table": "a.csv", "count": "6693"}`,
		`{"source_table": "b.csv", "count": 123726}`,
		`{"source_table": "c.csv", "count": 1234567890123456789}`,
	}
	require.Len(t, plan.Workers, len(want))
	require.Len(t, plan.Record, len(want))

	for i := range want {
		assert.JSONEq(t, want[i], string(plan.Workers[i]), "worker %d", i)
		assert.Equal(t, string(plan.Record[i]), string(plan.Workers[i]), "record %d", i)
	}
}

func TestPlanStageMultipleInputPrefixesEachSource(t *testing.T) {
	t.Parallel()

	stage := parsePipeline(t).Stage(1)
	sources := raws(
		`{"table": "a.csv", "line_count": "6693"}`,
		`{"table": "b.csv", "line_count": 123726, "unused": true}`,
	)

	plan, err := job.PlanStage(stage, sources)
	require.NoError(t, err)

	require.Len(t, plan.Record, 2)
	assert.JSONEq(t, `{"_0_source_table": "a.csv", "_0_count": "6693"}`, string(plan.Record[0]))
	assert.JSONEq(t, `{"_1_source_table": "b.csv", "_1_count": 123726}`, string(plan.Record[1]))

	require.Len(t, plan.Workers, 1)
	assert.JSONEq(t, `{
		"_0_source_table": "a.csv", "_0_count": "6693",
		"_1_source_table": "b.csv", "_1_count": 123726
	}`, string(plan.Workers[0]))
}

func TestPlanStageMultipleInputPrefixesPastTenSources(t *testing.T) {
	t.Parallel()

	stage := parsePipeline(t).Stage(1)
	stage.InputMap = map[string]string{"source_table": "table"}

	sources := make([]json.RawMessage, 12)
	for i := range sources {
		sources[i] = json.RawMessage(`{"table": "t.csv"}`)
	}

	plan, err := job.PlanStage(stage, sources)
	require.NoError(t, err)

	require.Len(t, plan.Workers, 1)
	var merged map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(plan.Workers[0], &merged))
	assert.Len(t, merged, 12)
	assert.Contains(t, merged, "_1_source_table")
	assert.Contains(t, merged, "_11_source_table")
}

func TestPlanStageKeepsValuesRaw(t *testing.T) {
	t.Parallel()

	values := map[string]string{
		"string number": `"6693"`,
		"number":        `123726`,
		"19 digits":     `1234567890123456789`,
		"decimal":       `0.10`,
		"null":          `null`,
		"object":        `{"b":[1,"2"]}`,
	}

	for _, inputType := range []string{job.InputSingle, job.InputMultiple} {
		for name, value := range values {
			t.Run(inputType+"/"+name, func(t *testing.T) {
				t.Parallel()

				stage := job.PipelineStage{
					Worker:   job.Worker{Input: job.WorkerInput{Type: inputType}},
					InputMap: map[string]string{"in": "out"},
				}

				plan, err := job.PlanStage(stage, raws(`{"out": `+value+`}`))
				require.NoError(t, err)

				key := "in"
				if inputType == job.InputMultiple {
					key = "_0_in"
				}

				for _, got := range [][]json.RawMessage{plan.Record, plan.Workers} {
					require.Len(t, got, 1)

					var fields map[string]json.RawMessage
					require.NoError(t, json.Unmarshal(got[0], &fields))
					assert.Equal(t, value, string(fields[key]))
				}
			})
		}
	}
}

func TestPlanStageRejectsSourceMissingMappedField(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		inputType string
		sources   []json.RawMessage
	}{
		{
			name:      "single, first source",
			inputType: job.InputSingle,
			sources:   raws(`{"table": "a.csv"}`),
		},
		{
			name:      "single, later source",
			inputType: job.InputSingle,
			sources: raws(`{"table": "a.csv", "line_count": 1}`,
				`{"table": "b.csv", "lines": 2}`),
		},
		{
			name:      "multiple",
			inputType: job.InputMultiple,
			sources:   raws(`{"table": "a.csv", "line_count": 1}`, `{"line_count": 2}`),
		},
		{
			name:      "source not an object",
			inputType: job.InputSingle,
			sources:   raws(`["a.csv"]`),
		},
		{
			name:      "source a string",
			inputType: job.InputMultiple,
			sources:   raws(`"a.csv"`),
		},
		{
			name:      "source null",
			inputType: job.InputSingle,
			sources:   raws(`null`),
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			stage := parsePipeline(t).Stage(1)
			stage.Worker.Input.Type = tt.inputType

			_, err := job.PlanStage(stage, tt.sources)

			require.ErrorIs(t, err, job.ErrBadPipeline)
		})
	}
}

func TestStartRequestCarriesWorkerInputAndConfigs(t *testing.T) {
	t.Parallel()

	p := parsePipeline(t)
	ds := job.DataSource{PipelineID: "p-1", PlatformID: "plat-1", PlatformTypeID: "type-1"}

	tests := []struct {
		name     string
		worker   job.Worker
		input    string
		settings job.StartSettings
		want     string
	}{
		{
			name:   "default callback variable",
			worker: p.Stage(0).Worker,
			input:  `{"file":"upload.csv"}`,
			settings: job.StartSettings{
				CallbackEnvVar: "JOB_CALLBACK_URL",
				CallbackURL:    "http://job-manager/jobs/xqa1rw7juZNfWw2t1RUttA",
			},
			want: `{
				"id": "w-split", "name": "split", "image": "registry/split:1.0",
				"data_cache_path": "/data_cache", "type": "worker",
				"inputs": {"file": "upload.csv"},
				"configs": {
					"CHUNK": "100", "VERBOSE": true,
					"DS_PLATFORM_ID": "plat-1", "DS_PLATFORM_TYPE_ID": "type-1",
					"JOB_CALLBACK_URL": "http://job-manager/jobs/xqa1rw7juZNfWw2t1RUttA"
				}
			}`,
		},
		{
			name:   "configured callback variable and raw values",
			worker: p.Stage(1).Worker,
			input:  `{"_0_count":"6693","_1_count":1234567890123456789}`,
			settings: job.StartSettings{
				CallbackEnvVar: "RESULT_URL",
				CallbackURL:    "http://jm:8080/cb/id-1",
			},
			want: `{
				"id": 17, "name": "merge", "image": "registry/merge:2.1",
				"data_cache_path": "/cache", "type": "worker",
				"inputs": {"_0_count": "6693", "_1_count": 1234567890123456789},
				"configs": {
					"DS_PLATFORM_ID": "plat-1", "DS_PLATFORM_TYPE_ID": "type-1",
					"RESULT_URL": "http://jm:8080/cb/id-1"
				}
			}`,
		},
		{
			name:   "worker without configs or cache path",
			worker: job.Worker{Image: json.RawMessage(`"img"`)},
			input:  `{}`,
			settings: job.StartSettings{
				CallbackEnvVar: "JOB_CALLBACK_URL",
				CallbackURL:    "http://job-manager/jobs/id-2",
			},
			want: `{
				"id": null, "name": null, "image": "img", "data_cache_path": null,
				"type": "worker", "inputs": {},
				"configs": {
					"DS_PLATFORM_ID": "plat-1", "DS_PLATFORM_TYPE_ID": "type-1",
					"JOB_CALLBACK_URL": "http://job-manager/jobs/id-2"
				}
			}`,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got := job.StartRequest(tt.worker, json.RawMessage(tt.input), ds, tt.settings)

			assert.JSONEq(t, tt.want, string(got))
			assert.NotContains(t, string(got), "description")
		})
	}
}

func TestStartRequestKeepsBigIntegerDigits(t *testing.T) {
	t.Parallel()

	got := job.StartRequest(job.Worker{Image: json.RawMessage(`"img"`)},
		json.RawMessage(`{"big":1234567890123456789}`), job.DataSource{},
		job.StartSettings{CallbackEnvVar: "JOB_CALLBACK_URL", CallbackURL: "u"})

	var body struct {
		Inputs map[string]json.RawMessage `json:"inputs"`
	}
	require.NoError(t, json.Unmarshal(got, &body))
	assert.Equal(t, "1234567890123456789", string(body.Inputs["big"]))
}

func TestStartRequestDoesNotChangeWorkerConfigs(t *testing.T) {
	t.Parallel()

	w := parsePipeline(t).Stage(0).Worker
	before := len(w.Configs)

	_ = job.StartRequest(w, json.RawMessage(`{}`), job.DataSource{},
		job.StartSettings{CallbackEnvVar: "JOB_CALLBACK_URL", CallbackURL: "u"})

	assert.Len(t, w.Configs, before)
	assert.NotContains(t, w.Configs, "JOB_CALLBACK_URL")
}

func TestOutputFilesListsDataCacheFilesOfStages(t *testing.T) {
	t.Parallel()

	p := parsePipeline(t)
	newDoc := func(stages map[string][]string) job.Job {
		doc := job.New(job.NewJob{Hash: "h", DsID: "ds", FileName: "upload.csv"}, time.Now())
		for key, outputs := range stages {
			doc.Stages[key] = job.Stage{Outputs: raws(outputs...)}
		}

		return doc
	}

	tests := []struct {
		name   string
		stages map[string][]string
		want   []string
	}{
		{
			name: "no stages",
			want: nil,
		},
		{
			name: "is_file fields of every stage, sorted",
			stages: map[string][]string{
				"0": {`{"table": "t2.csv", "line_count": "6693"}`, `{"table": "t1.csv"}`},
				"1": {`{"report": "a-report.pdf", "summary": "s.txt"}`},
			},
			want: []string{"a-report.pdf", "t1.csv", "t2.csv"},
		},
		{
			name: "fields not marked is_file left out",
			stages: map[string][]string{
				"0": {`{"line_count": "lines.txt"}`},
				"1": {`{"summary": "summary.txt"}`},
			},
			want: nil,
		},
		{
			name: "init source left out",
			stages: map[string][]string{
				"0": {`{"table": "upload.csv"}`, `{"table": "t1.csv"}`},
			},
			want: []string{"t1.csv"},
		},
		{
			name: "names that leave the data cache left out",
			stages: map[string][]string{
				"0": {
					`{"table": "../etc/passwd"}`, `{"table": "sub/t.csv"}`,
					`{"table": "/abs.csv"}`, `{"table": ".."}`, `{"table": "."}`,
					`{"table": ""}`, `{"table": "a\\b.csv"}`, `{"table": "ok.csv"}`,
				},
			},
			want: []string{"ok.csv"},
		},
		{
			name: "duplicates once",
			stages: map[string][]string{
				"0": {`{"table": "t.csv"}`, `{"table": "t.csv"}`},
				"1": {`{"report": "t.csv"}`},
			},
			want: []string{"t.csv"},
		},
		{
			name: "values that are not strings left out",
			stages: map[string][]string{
				"0": {`{"table": 12}`, `{"table": null}`, `{"table": ["x.csv"]}`, `["y.csv"]`},
			},
			want: nil,
		},
		{
			name: "stage the pipeline lacks left out",
			stages: map[string][]string{
				"2":    {`{"table": "x.csv", "report": "y.pdf"}`},
				"last": {`{"table": "z.csv"}`},
			},
			want: nil,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got := job.OutputFiles(p, newDoc(tt.stages))

			if len(tt.want) == 0 {
				assert.Empty(t, got)

				return
			}

			assert.Equal(t, tt.want, got)
			for _, name := range got {
				assert.False(t, strings.ContainsAny(name, `/\`), name)
			}
		})
	}
}
