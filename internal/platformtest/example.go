package platformtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"

	"github.com/industrial-data/jobmanager/examples/sample/energy"
)

// SensorTables are the tables the example split stage produces, one per
// sensor of the sample plant, as in the original service's API document.
var SensorTables = energy.Sensors

// StageSpec describes one stage of a test pipeline.
type StageSpec struct {
	Image     string
	InputType string
	// InputMap maps worker input fields to source fields.
	InputMap map[string]string
	// Outputs names the worker's output fields and whether each is a file.
	Outputs map[string]bool
}

// Pipeline builds a pipeline document as the registry serves it.
func Pipeline(name string, stages ...StageSpec) json.RawMessage {
	doc := map[string]any{}
	for i, s := range stages {
		var fields []map[string]any
		for field, isFile := range s.Outputs {
			fields = append(fields, map[string]any{
				"name": field, "media_type": "text/csv", "is_file": isFile,
			})
		}

		var inputs []map[string]any
		for field := range s.InputMap {
			inputs = append(inputs, map[string]any{"name": field, "media_type": "text/csv", "is_file": true})
		}

		doc[itoa(i)] = map[string]any{
			"description": "stage " + itoa(i),
			"input_map":   s.InputMap,
			"worker": map[string]any{
				"id":              "worker-" + s.Image,
				"name":            s.Image,
				"image":           "platform/" + s.Image + ":1.0",
				"data_cache_path": "/data_cache",
				"description":     "does " + s.Image,
				"configs":         map[string]any{"delimiter": ";", "limit": 10},
				"input":           map[string]any{"type": s.InputType, "fields": inputs},
				"output":          map[string]any{"type": "single", "fields": fields},
			},
		}
	}

	return mustJSON(map[string]any{"name": name, "stages": doc})
}

// ExamplePipeline is the three-stage pipeline of the original API
// document: XLSX to CSV, trim the CSV, split it into one table per sensor.
func ExamplePipeline() json.RawMessage {
	return Pipeline("energy",
		StageSpec{
			Image: "xlsx-to-csv", InputType: "single",
			InputMap: map[string]string{"xlsx_file": "init_source"},
			Outputs:  map[string]bool{"csv_file": true, "line_count": false},
		},
		StageSpec{
			Image: "trim", InputType: "single",
			InputMap: map[string]string{"input_csv": "csv_file"},
			Outputs:  map[string]bool{"output_csv": true, "line_count": false},
		},
		StageSpec{
			Image: "split", InputType: "single",
			InputMap: map[string]string{"source_table": "output_csv"},
			Outputs:  map[string]bool{"unique_id": false, "result_table": true, "line_count": false},
		},
	)
}

// ExampleOutputs returns what the example pipeline's workers report for a
// start request, picked by the worker's image.
func ExampleOutputs(r StartRequest) any {
	switch r.Image {
	case "platform/xlsx-to-csv:1.0":
		return []map[string]any{{"csv_file": NewFileName(), "line_count": 123726}}
	case "platform/trim:1.0":
		return []map[string]any{{"output_csv": NewFileName(), "line_count": 123726}}
	case "platform/split:1.0":
		outputs := make([]map[string]any, len(SensorTables))
		for i, table := range SensorTables {
			outputs[i] = map[string]any{"unique_id": table, "result_table": NewFileName(), "line_count": "6693"}
		}

		return outputs
	default:
		return []map[string]any{{"output": NewFileName()}}
	}
}

// ExampleWorkers behave like the example pipeline's workers: each reports
// at once.
func ExampleWorkers(r StartRequest) Plan {
	return Plan{Outputs: ExampleOutputs(r)}
}

// NewFileName returns a data-cache file name like the platform's.
func NewFileName() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)

	return hex.EncodeToString(b)
}

func itoa(i int) string {
	return string(mustJSON(i))
}
