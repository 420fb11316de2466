// Package local stands in for the platform on a single host: data sources
// and pipelines come from one JSON file, and workers run as local
// processes under the same contract as the platform's containers.
package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/industrial-data/jobmanager/internal/job"
)

// File is the platform file: what the registries and the deployment
// manager would know, in the shapes they serve it.
type File struct {
	// DataSources maps a ds_id to its data source.
	DataSources map[string]json.RawMessage `json:"data_sources"`
	// Pipelines maps a pipeline id to its pipeline.
	Pipelines map[string]json.RawMessage `json:"pipelines"`
	// Workers maps a worker image to the program that plays it.
	Workers map[string]Program `json:"workers"`
}

// Program is a local program that plays a worker image.
type Program struct {
	// Command is the program and its arguments. A relative program path
	// is taken from the platform file's directory.
	Command []string `json:"command"`
	// Env holds extra environment variables for the program.
	Env map[string]string `json:"env"`
}

// Load reads a platform file.
func Load(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read platform file: %w", err)
	}

	var f File
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("parse platform file %s: %w", path, err)
	}

	// Workers run in the data cache, so their paths must not be relative.
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("platform file %s: %w", path, err)
	}

	for image, p := range f.Workers {
		if len(p.Command) == 0 {
			return nil, fmt.Errorf("platform file %s: worker %q has no command", path, image)
		}

		if !filepath.IsAbs(p.Command[0]) && filepath.Base(p.Command[0]) != p.Command[0] {
			p.Command[0] = filepath.Join(dir, p.Command[0])
		}

		f.Workers[image] = p
	}

	return &f, nil
}

// Registry serves data sources and pipelines from a platform file.
type Registry struct {
	file *File
}

// NewRegistry returns a registry on a loaded platform file.
func NewRegistry(f *File) *Registry {
	return &Registry{file: f}
}

// DataSource looks up a data source.
func (r *Registry) DataSource(_ context.Context, dsID string) (job.DataSource, error) {
	raw, ok := r.file.DataSources[dsID]
	if !ok {
		return job.DataSource{}, fmt.Errorf("data source %s: not in the platform file", dsID)
	}

	ds, err := job.ParseDataSource(raw)
	if err != nil {
		return job.DataSource{}, fmt.Errorf("data source %s: %w", dsID, err)
	}

	return ds, nil
}

// Pipeline looks up a pipeline.
func (r *Registry) Pipeline(_ context.Context, id string) (json.RawMessage, error) {
	raw, ok := r.file.Pipelines[id]
	if !ok {
		return nil, fmt.Errorf("pipeline %s: not in the platform file", id)
	}

	return raw, nil
}
