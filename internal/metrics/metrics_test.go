package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/metrics"
)

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)

	return rec.Body.String()
}

func TestRequestsAreCountedByRouteNotPath(t *testing.T) {
	t.Parallel()
	m := metrics.New(func(context.Context) (map[string]int, error) { return nil, nil },
		slog.New(slog.NewJSONHandler(io.Discard, nil)))

	e := echo.New()
	e.Use(m.Middleware)
	e.GET("/jobs/:id", func(c echo.Context) error { return c.String(http.StatusOK, "job") })
	e.GET("/missing/:id", func(echo.Context) error { return echo.ErrNotFound })

	for _, path := range []string{"/jobs/a", "/jobs/b", "/missing/x"} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}

	for _, method := range []string{"FOO", "BAR"} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, "/jobs/a", nil))
	}

	out := scrape(t, m)
	assert.Contains(t, out, `jobmanager_http_requests_total{code="200",method="GET",route="/jobs/:id"} 2`)
	assert.Contains(t, out, `jobmanager_http_requests_total{code="404",method="GET",route="/missing/:id"} 1`)
	assert.Contains(t, out, `jobmanager_http_request_duration_seconds_count{method="GET",route="/jobs/:id"} 2`)
	assert.NotContains(t, out, `/jobs/a`)
	assert.Contains(t, out, `jobmanager_http_requests_total{code="405",method="other",route="/jobs/:id"} 2`)
	assert.NotContains(t, out, `FOO`)
}

func TestJobsAreCountedFromTheDatabaseAtScrapeTime(t *testing.T) {
	t.Parallel()
	counts := map[string]int{"pending": 3, "running": 2}
	m := metrics.New(func(context.Context) (map[string]int, error) { return counts, nil },
		slog.New(slog.NewJSONHandler(io.Discard, nil)))

	m.JobEnded("finished")
	m.ResultsAccepted(14)
	m.Step("start", time.Now(), true)

	out := scrape(t, m)
	assert.Contains(t, out, `jobmanager_jobs{status="pending"} 3`)
	assert.Contains(t, out, `jobmanager_jobs{status="running"} 2`)
	assert.Contains(t, out, `jobmanager_jobs_ended_total{status="finished"} 1`)
	assert.Contains(t, out, `jobmanager_results_total 14`)
	assert.Contains(t, out, `jobmanager_step_failures_total{step="start"} 1`)
	assert.Contains(t, out, `go_goroutines`)
}

func TestTheOtherMetricsAreServedWhileJobsCannotBeCounted(t *testing.T) {
	t.Parallel()
	m := metrics.New(func(context.Context) (map[string]int, error) { return nil, errors.New("down") },
		slog.New(slog.NewJSONHandler(io.Discard, nil)))

	out := scrape(t, m)

	assert.Contains(t, out, "go_goroutines")
	assert.NotContains(t, out, "jobmanager_jobs{")
}
