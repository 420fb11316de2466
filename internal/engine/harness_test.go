package engine_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/api"
	"github.com/industrial-data/jobmanager/internal/engine"
	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/peer"
	"github.com/industrial-data/jobmanager/internal/platformtest"
	"github.com/industrial-data/jobmanager/internal/store"
	"github.com/industrial-data/jobmanager/internal/testdb"
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

	if opts.maxJobs == 0 {
		opts.maxJobs = 2
	}

	if opts.stageWorkers == 0 {
		opts.stageWorkers = 1
	}

	if opts.check == 0 {
		opts.check = time.Minute
	}

	if opts.dataCache == "" {
		opts.dataCache = t.TempDir()
	}

	platform := platformtest.New(t, onStart)
	pool := testdb.Pool(t)

	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	logger := slog.New(slog.NewJSONHandler(testLog(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	st := store.New(pool)
	st.SetOptions(store.Options{
		Lease:        10 * time.Second,
		Check:        opts.check,
		StageWorkers: opts.stageWorkers,
		Start:        job.StartSettings{CallbackEnvVar: "JOB_CALLBACK_URL", CallbackURL: srv.URL + "/jobs"},
		KeepFiles:    opts.keepFiles,
	})

	client := &http.Client{Timeout: 5 * time.Second}
	eng := engine.New(st,
		peer.NewRegistries(client, platform.Registry.URL+"/machines", platform.Registry.URL+"/pipelines"),
		peer.NewDeployments(client, platform.Deployments.URL+"/deployments"),
		logger,
		engine.Options{
			MaxJobs:     opts.maxJobs,
			Poll:        50 * time.Millisecond,
			DataCache:   opts.dataCache,
			StepTimeout: 10 * time.Second,
		})
	handler = api.New(eng, logger, api.Options{MaxBodyBytes: 1 << 20})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		eng.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done

		drain, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		_ = eng.Drain(drain)
	})

	return &service{t: t, url: srv.URL, pool: pool, platform: platform, cache: opts.dataCache}
}

// testLog sends the service's log to the test output when JOBMANAGER_TEST_LOG
// is set, and nowhere otherwise.
func testLog(t *testing.T) io.Writer {
	if os.Getenv("JOBMANAGER_TEST_LOG") == "" {
		return io.Discard
	}

	return writerFunc(func(p []byte) (int, error) {
		t.Log(strings.TrimSpace(string(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

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
