package job

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrBadPipeline means a data source or pipeline from a registry cannot be
// run as it is. The job that needs it fails; the service goes on.
var ErrBadPipeline = errors.New("cannot run")

// Input types of a worker.
const (
	// InputSingle runs one worker per source.
	InputSingle = "single"
	// InputMultiple runs one worker for all sources of the stage.
	InputMultiple = "multiple"
)

// DataSource is what the data-source registry says of a job's ds_id.
type DataSource struct {
	Name           string `json:"name"`
	PipelineID     string `json:"pipeline_id"`
	PlatformID     string `json:"platform_id"`
	PlatformTypeID string `json:"platform_type_id"`
}

// ParseDataSource reads a data source as the registry serves it.
func ParseDataSource(body []byte) (DataSource, error) {
	var ds DataSource
	if err := json.Unmarshal(body, &ds); err != nil {
		return DataSource{}, fmt.Errorf("%w: malformed answer: %w", ErrBadPipeline, err)
	}

	if ds.PipelineID == "" {
		return DataSource{}, fmt.Errorf("%w: the answer names no pipeline_id", ErrBadPipeline)
	}

	return ds, nil
}

// Pipeline is a pipeline as the registry serves it.
type Pipeline struct {
	Name   string                   `json:"name"`
	Stages map[string]PipelineStage `json:"stages"`
}

// PipelineStage is one stage of a pipeline.
type PipelineStage struct {
	Worker      Worker            `json:"worker"`
	Description string            `json:"description"`
	InputMap    map[string]string `json:"input_map"`
}

// Worker describes the worker a stage runs. The fields the deployment
// manager receives are kept as raw JSON so they reach it as the registry
// wrote them.
type Worker struct {
	ID            json.RawMessage            `json:"id"`
	Name          json.RawMessage            `json:"name"`
	Image         json.RawMessage            `json:"image"`
	DataCachePath json.RawMessage            `json:"data_cache_path"`
	Description   json.RawMessage            `json:"description"`
	Configs       map[string]json.RawMessage `json:"configs"`
	Input         WorkerInput                `json:"input"`
	Output        WorkerOutput               `json:"output"`
}

// WorkerInput says how a worker takes its sources.
type WorkerInput struct {
	Type   string            `json:"type"`
	Fields []json.RawMessage `json:"fields"`
}

// WorkerOutput describes what a worker reports.
type WorkerOutput struct {
	Type   string        `json:"type"`
	Fields []OutputField `json:"fields"`
}

// OutputField is one field of a worker's output.
type OutputField struct {
	Name      string `json:"name"`
	MediaType string `json:"media_type"`
	IsFile    bool   `json:"is_file"`
}

// ParsePipeline reads a pipeline and checks that it can run: stages
// numbered from "0" without gaps, each with a known input type.
func ParsePipeline(body []byte) (Pipeline, error) {
	var p Pipeline
	if err := json.Unmarshal(body, &p); err != nil {
		return Pipeline{}, fmt.Errorf("%w: %w", ErrBadPipeline, err)
	}

	if len(p.Stages) == 0 {
		return Pipeline{}, fmt.Errorf("%w: no stages", ErrBadPipeline)
	}

	for i := range len(p.Stages) {
		s, ok := p.Stages[strconv.Itoa(i)]
		if !ok {
			return Pipeline{}, fmt.Errorf("%w: stage %d is missing", ErrBadPipeline, i)
		}

		if s.Worker.Input.Type != InputSingle && s.Worker.Input.Type != InputMultiple {
			return Pipeline{}, fmt.Errorf("%w: stage %d has unknown input type %q",
				ErrBadPipeline, i, s.Worker.Input.Type)
		}

		if len(s.Worker.Image) == 0 {
			return Pipeline{}, fmt.Errorf("%w: stage %d names no worker image", ErrBadPipeline, i)
		}
	}

	return p, nil
}

// Stage returns stage k of the pipeline; ParsePipeline has checked that
// every stage below len(p.Stages) exists.
func (p Pipeline) Stage(k int) PipelineStage {
	return p.Stages[strconv.Itoa(k)]
}

// StageInputs are the inputs of one stage, worked out from its sources.
type StageInputs struct {
	// Record is the stage's inputs list as the job document shows it.
	Record []json.RawMessage
	// Workers holds the input of each worker the stage starts.
	Workers []json.RawMessage
}

// PlanStage works out a stage's inputs from its sources: the outputs of
// the stage before, or the job's init sources for stage 0. A single-input
// worker runs once per source; a multiple-input worker runs once with
// every source's fields, prefixed _i_ for source i.
func PlanStage(stage PipelineStage, sources []json.RawMessage) (StageInputs, error) {
	mapped := make([]map[string]json.RawMessage, len(sources))
	for i, src := range sources {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(src, &fields); err != nil {
			return StageInputs{}, fmt.Errorf("%w: source %d is not an object", ErrBadPipeline, i)
		}

		m, err := mapInput(stage.InputMap, fields)
		if err != nil {
			return StageInputs{}, fmt.Errorf("source %d: %w", i, err)
		}

		mapped[i] = m
	}

	if stage.Worker.Input.Type == InputSingle {
		record := make([]json.RawMessage, len(mapped))
		for i, m := range mapped {
			record[i] = mustMarshal(m)
		}

		return StageInputs{Record: record, Workers: record}, nil
	}

	merged := map[string]json.RawMessage{}
	record := make([]json.RawMessage, len(mapped))
	for i, m := range mapped {
		prefixed := make(map[string]json.RawMessage, len(m))
		for k, v := range m {
			key := "_" + strconv.Itoa(i) + "_" + k
			prefixed[key] = v
			merged[key] = v
		}

		record[i] = mustMarshal(prefixed)
	}

	return StageInputs{Record: record, Workers: []json.RawMessage{mustMarshal(merged)}}, nil
}

// mapInput gives each worker input field the value of the source field
// the input map names for it.
func mapInput(inputMap map[string]string, source map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(inputMap))
	for field, from := range inputMap {
		v, ok := source[from]
		if !ok {
			return nil, fmt.Errorf("%w: input map names field %q, which the source lacks", ErrBadPipeline, from)
		}

		out[field] = v
	}

	return out, nil
}

// InitSourceList returns a job's init sources as stage 0's sources.
func InitSourceList(doc Job) []json.RawMessage {
	sources := make([]json.RawMessage, len(doc.InitSources))
	for i, s := range doc.InitSources {
		sources[i] = mustMarshal(s)
	}

	return sources
}

// StartSettings are the parts of a worker's start request that come from
// the service's configuration.
type StartSettings struct {
	// CallbackEnvVar names the config that carries the callback URL.
	CallbackEnvVar string
	// CallbackURL is the URL a worker of the job posts its result to.
	CallbackURL string
}

// StartRequest returns the body that asks the deployment manager to start
// a worker with the given input.
func StartRequest(w Worker, input json.RawMessage, ds DataSource, s StartSettings) json.RawMessage {
	configs := make(map[string]json.RawMessage, len(w.Configs)+3)
	for k, v := range w.Configs {
		configs[k] = v
	}

	configs["DS_PLATFORM_ID"] = mustMarshal(ds.PlatformID)
	configs["DS_PLATFORM_TYPE_ID"] = mustMarshal(ds.PlatformTypeID)
	configs[s.CallbackEnvVar] = mustMarshal(s.CallbackURL)

	return mustMarshal(struct {
		ID            json.RawMessage            `json:"id"`
		Name          json.RawMessage            `json:"name"`
		Image         json.RawMessage            `json:"image"`
		DataCachePath json.RawMessage            `json:"data_cache_path"`
		Configs       map[string]json.RawMessage `json:"configs"`
		Inputs        json.RawMessage            `json:"inputs"`
		Type          string                     `json:"type"`
	}{
		ID:            orNull(w.ID),
		Name:          orNull(w.Name),
		Image:         orNull(w.Image),
		DataCachePath: orNull(w.DataCachePath),
		Configs:       configs,
		Inputs:        input,
		Type:          "worker",
	})
}

// OutputFiles returns the data-cache files a job's stages name in their
// outputs: the values of the fields each stage's worker marks is_file.
// The job's init source and anything that is not a plain file name are
// left out, so that cleaning up can never reach outside the data cache.
func OutputFiles(p Pipeline, doc Job) []string {
	keep := map[string]bool{}
	for _, s := range doc.InitSources {
		keep[s.InitSource] = true
	}

	seen := map[string]bool{}
	var files []string
	for key, stage := range doc.Stages {
		k, err := strconv.Atoi(key)
		if err != nil {
			continue
		}

		for _, field := range p.Stage(k).Worker.Output.Fields {
			if !field.IsFile {
				continue
			}

			for _, out := range stage.Outputs {
				name, ok := stringField(out, field.Name)
				if !ok || keep[name] || seen[name] || !plainFileName(name) {
					continue
				}

				seen[name] = true
				files = append(files, name)
			}
		}
	}

	sort.Strings(files)

	return files
}

func stringField(obj json.RawMessage, name string) (string, bool) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(obj, &fields); err != nil {
		return "", false
	}

	var s string
	if err := json.Unmarshal(fields[name], &s); err != nil {
		return "", false
	}

	return s, true
}

func plainFileName(name string) bool {
	return name != "" && name != "." && name != ".." &&
		!strings.ContainsAny(name, `/\`) && filepath.Base(name) == name
}

func orNull(v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return json.RawMessage("null")
	}

	return v
}

// mustMarshal encodes values that cannot fail to encode: maps of raw JSON
// that was valid when decoded, strings and plain structs.
func mustMarshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}

	return b
}
