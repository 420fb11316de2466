package job_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/platformtest"
)

// The benchmarks feed the rules the data of the original API document's
// example: a three-stage pipeline whose split stage reports one table for
// each of 14 sensors.

const (
	benchDsID = "098z0g976gf76ftfj"
	benchHash = "502a515f3b0c661ae0532da64863157a4e7c2b908351a15de1e59dc6fa0327ed" +
		"695a9708ebaf312a1dd70617b573af6b52f45a380ccb29a3104f85560a102477"
	benchFile = "51613626e8f342bb810d4ce0aaee4ca3"
)

// benchFileName returns the n-th data-cache file name of the benchmarks,
// shaped like the platform's and the same on every run.
func benchFileName(n int) string {
	return fmt.Sprintf("%032x", 0x5c3759fed6c241db+n)
}

// splitOutputs returns what the example split worker reports: one output
// per sensor table, its line count a string as in the original document.
func splitOutputs() []json.RawMessage {
	outputs := make([]json.RawMessage, len(platformtest.SensorTables))
	for i, table := range platformtest.SensorTables {
		outputs[i] = mustJSON(map[string]any{
			"unique_id": table, "result_table": benchFileName(100 + i), "line_count": "6693",
		})
	}

	return outputs
}

// examplePipeline returns the three-stage pipeline of the original API
// document.
func examplePipeline(b *testing.B) job.Pipeline {
	b.Helper()

	p, err := job.ParsePipeline(platformtest.ExamplePipeline())
	if err != nil {
		b.Fatalf("parse example pipeline: %v", err)
	}

	return p
}

// loadStage returns a stage that takes the split stage's tables, each
// with its sensor name, in the way the input type says.
func loadStage(b *testing.B, inputType string) job.PipelineStage {
	b.Helper()

	p, err := job.ParsePipeline(platformtest.Pipeline("load", platformtest.StageSpec{
		Image:     "load",
		InputType: inputType,
		InputMap:  map[string]string{"table": "result_table", "sensor": "unique_id"},
		Outputs:   map[string]bool{"loaded": false},
	}))
	if err != nil {
		b.Fatalf("parse load pipeline: %v", err)
	}

	return p.Stage(0)
}

func mustJSON(v any) json.RawMessage {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}

	return raw
}

func BenchmarkID(b *testing.B) {
	b.ReportAllocs()

	for b.Loop() {
		job.ID(benchDsID, benchHash)
	}
}

func BenchmarkParseNewJob(b *testing.B) {
	body := mustJSON(map[string]string{"hash": benchHash, "ds_id": benchDsID, "file_name": benchFile})

	b.ReportAllocs()

	for b.Loop() {
		if _, err := job.ParseNewJob(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCommandSplitResult(b *testing.B) {
	body := mustJSON(map[string][]json.RawMessage{
		"db5012d4-c20f-4847-bf92-f715be0c4932": splitOutputs(),
	})

	b.ReportAllocs()

	for b.Loop() {
		cmd, err := job.ParseCommand(body)
		if err != nil {
			b.Fatal(err)
		}

		if len(cmd.Results) != 1 {
			b.Fatalf("got %d results, want 1", len(cmd.Results))
		}
	}
}

func BenchmarkPlanStage(b *testing.B) {
	sources := splitOutputs()

	for _, tc := range []struct {
		inputType string
		workers   int
	}{
		{job.InputSingle, len(sources)},
		{job.InputMultiple, 1},
	} {
		b.Run(tc.inputType+"/14_sources", func(b *testing.B) {
			stage := loadStage(b, tc.inputType)

			b.ReportAllocs()

			for b.Loop() {
				plan, err := job.PlanStage(stage, sources)
				if err != nil {
					b.Fatal(err)
				}

				if len(plan.Workers) != tc.workers {
					b.Fatalf("got %d workers, want %d", len(plan.Workers), tc.workers)
				}
			}
		})
	}
}

func BenchmarkStartRequest(b *testing.B) {
	worker := examplePipeline(b).Stage(2).Worker
	input := mustJSON(map[string]string{"source_table": benchFileName(2)})
	ds := job.DataSource{
		Name:           "energy",
		PipelineID:     "677f99d4-2ec7-450c-add2-8b7c5f7f171c",
		PlatformID:     "device:aeb83bf0-c50c-48e9-91b6-4db07c65c99c",
		PlatformTypeID: "device-type:c5940477-afe5-493c-9a9e-8043f8de7acd",
	}
	settings := job.StartSettings{
		CallbackEnvVar: "JOB_CALLBACK_URL",
		CallbackURL:    "http://job-manager/jobs/MA2uh3-yxrJT0eaqR4MojQ",
	}

	b.ReportAllocs()

	for b.Loop() {
		job.StartRequest(worker, input, ds, settings)
	}
}

func BenchmarkOutputFilesFinishedJob(b *testing.B) {
	p := examplePipeline(b)
	doc := job.New(job.NewJob{Hash: benchHash, DsID: benchDsID, FileName: benchFile}, time.Now())
	doc.Status = job.StatusFinished

	stageOutputs := [][]json.RawMessage{
		{mustJSON(map[string]any{"csv_file": benchFileName(0), "line_count": 123726})},
		{mustJSON(map[string]any{"output_csv": benchFileName(1), "line_count": 123726})},
		splitOutputs(),
	}
	for k, outputs := range stageOutputs {
		doc.Stages[fmt.Sprint(k)] = job.Stage{
			Inputs:    []json.RawMessage{mustJSON(map[string]string{"in": benchFileName(k)})},
			Outputs:   outputs,
			Started:   job.NewTime(time.Now()),
			Completed: job.NewTime(time.Now()),
		}
	}

	want := 2 + len(platformtest.SensorTables)

	b.ReportAllocs()

	for b.Loop() {
		if files := job.OutputFiles(p, doc); len(files) != want {
			b.Fatalf("got %d files, want %d", len(files), want)
		}
	}
}
