// Package servicetest runs the job manager in the test's own process: the
// API on a loopback server and the engine, on a fresh database, against
// whatever registry and launcher the test gives it. Tests that need real
// processes of the binary are in cmd/jobmanager.
package servicetest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/industrial-data/jobmanager/internal/api"
	"github.com/industrial-data/jobmanager/internal/engine"
	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/store"
	"github.com/industrial-data/jobmanager/internal/testdb"
)

// Options shape a test's service. Zero values take the defaults below.
type Options struct {
	Registry engine.Registry
	Launcher engine.Launcher
	// MaxJobs defaults to 2, StageWorkers to 1.
	MaxJobs      int
	StageWorkers int
	// Check defaults to a minute: no check happens unless a test asks.
	Check time.Duration
	// DataCache defaults to a temporary directory.
	DataCache string
	KeepFiles bool
}

// Service is a running job manager.
type Service struct {
	// URL is the base URL of the API.
	URL string
	// Pool is a connection pool on the service's database.
	Pool *pgxpool.Pool
	// DataCache is the directory output files are deleted from.
	DataCache string
}

// Start runs a service until the test ends. Its log goes to the test's
// output when TEST_SERVICE_LOG is set.
func Start(t *testing.T, opts Options) *Service {
	t.Helper()

	opts = withDefaults(t, opts)
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
		Check:        opts.Check,
		StageWorkers: opts.StageWorkers,
		Start:        job.StartSettings{CallbackEnvVar: "JOB_CALLBACK_URL", CallbackURL: srv.URL + "/jobs"},
		KeepFiles:    opts.KeepFiles,
		Owner:        t.Name(),
	})

	eng := engine.New(st, opts.Registry, opts.Launcher, logger, engine.Options{
		MaxJobs:     opts.MaxJobs,
		Poll:        50 * time.Millisecond,
		DataCache:   opts.DataCache,
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

	return &Service{URL: srv.URL, Pool: pool, DataCache: opts.DataCache}
}

func withDefaults(t *testing.T, opts Options) Options {
	if opts.MaxJobs == 0 {
		opts.MaxJobs = 2
	}

	if opts.StageWorkers == 0 {
		opts.StageWorkers = 1
	}

	if opts.Check == 0 {
		opts.Check = time.Minute
	}

	if opts.DataCache == "" {
		opts.DataCache = t.TempDir()
	}

	return opts
}

// testLog sends the service's log to the test output when
// TEST_SERVICE_LOG is set, and nowhere otherwise.
func testLog(t *testing.T) io.Writer {
	if os.Getenv("TEST_SERVICE_LOG") == "" {
		return io.Discard
	}

	return writerFunc(func(p []byte) (int, error) {
		t.Log(strings.TrimSpace(string(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
