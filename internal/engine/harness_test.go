package engine_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/peer"
	"github.com/industrial-data/jobmanager/internal/platformtest"
	"github.com/industrial-data/jobmanager/internal/servicetest"
)

// options tune a test's service.
type options struct {
	maxJobs      int
	stageWorkers int
	check        time.Duration
	keepFiles    bool
	dataCache    string
}

// service is a job manager on a fresh database, with its engine running
// against a fake platform.
type service struct {
	t        *testing.T
	url      string
	pool     *pgxpool.Pool
	platform *platformtest.Platform
	cache    string
}

func setup(t *testing.T, onStart func(platformtest.StartRequest) platformtest.Plan, opts options) *service {
	t.Helper()

	platform := platformtest.New(t, onStart)
	client := &http.Client{Timeout: 5 * time.Second}
	svc := servicetest.Start(t, servicetest.Options{
		Registry:     peer.NewRegistries(client, platform.Registry.URL+"/machines", platform.Registry.URL+"/pipelines"),
		Launcher:     peer.NewDeployments(client, platform.Deployments.URL+"/deployments"),
		MaxJobs:      opts.maxJobs,
		StageWorkers: opts.stageWorkers,
		Check:        opts.check,
		DataCache:    opts.dataCache,
		KeepFiles:    opts.keepFiles,
	})

	return &service{t: t, url: svc.URL, pool: svc.Pool, platform: platform, cache: svc.DataCache}
}

func (s *service) post(path, body string) (int, string) {
	s.t.Helper()

	resp, err := http.Post(s.url+path, "application/json", strings.NewReader(body))
	require.NoError(s.t, err)
	defer resp.Body.Close()

	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)

	return resp.StatusCode, string(b)
}

func (s *service) get(path string) (int, []byte) {
	s.t.Helper()

	resp, err := http.Get(s.url + path)
	require.NoError(s.t, err)
	defer resp.Body.Close()

	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)

	return resp.StatusCode, b
}

// submit posts a job for a data source and returns its id.
func (s *service) submit(dsID, hash, file string) string {
	s.t.Helper()

	body, _ := json.Marshal(map[string]string{"ds_id": dsID, "hash": hash, "file_name": file})
	status, id := s.post("/jobs", string(body))
	require.Equal(s.t, http.StatusOK, status, id)

	return id
}

// ended waits for a job to reach history and returns its document there.
func (s *service) ended(id string) job.Job {
	s.t.Helper()

	var doc job.Job
	s.eventually(func() bool {
		status, body := s.get("/history/" + id)
		if status != http.StatusOK {
			return false
		}

		require.NoError(s.t, json.Unmarshal(body, &doc))

		return true
	}, "job %s to end", id)

	return doc
}

// active returns the document of an active job.
func (s *service) active(id string) job.Job {
	s.t.Helper()

	status, body := s.get("/jobs/" + id)
	require.Equal(s.t, http.StatusOK, status, string(body))

	var doc job.Job
	require.NoError(s.t, json.Unmarshal(body, &doc))

	return doc
}

// eventually waits until cond holds, failing the test after 20 seconds.
func (s *service) eventually(cond func() bool, what string, args ...any) {
	s.t.Helper()

	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for "+what, args...)
		}

		time.Sleep(10 * time.Millisecond)
	}
}

// count runs a counting query.
func (s *service) count(query string, args ...any) int {
	s.t.Helper()

	var n int
	require.NoError(s.t, s.pool.QueryRow(context.Background(), query, args...).Scan(&n))

	return n
}
