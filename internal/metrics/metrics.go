// Package metrics holds the service's Prometheus metrics. Every replica
// serves its own at /metrics; the counts of pending and running jobs are
// read from the database at scrape time, so every replica reports the
// same, service-wide values for them.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "jobmanager"

// Metrics records what the service does.
type Metrics struct {
	registry *prometheus.Registry

	requests     *prometheus.CounterVec
	requestTime  *prometheus.HistogramVec
	jobsEnded    *prometheus.CounterVec
	results      prometheus.Counter
	stepTime     *prometheus.HistogramVec
	stepFailures *prometheus.CounterVec
}

// JobCounter counts the active jobs by status across the service.
type JobCounter func(ctx context.Context) (map[string]int, error)

// New returns the metrics, with Go's runtime and process metrics and the
// job counts read through count.
func New(count JobCounter, logger *slog.Logger) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests answered, by method, route and status code.",
		}, []string{"method", "route", "code"}),
		requestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by method and route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "route"}),
		jobsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "jobs_ended_total",
			Help: "Jobs this replica ended, by final status.",
		}, []string{"status"}),
		results: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "results_total",
			Help: "Worker results this replica kept; a repeated result is not counted again.",
		}),
		stepTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "step_duration_seconds",
			Help:    "Time of the engine's steps (peer calls and their transactions), by step.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"step"}),
		stepFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "step_failures_total",
			Help: "Engine steps that failed and were left for a retry, by step.",
		}, []string{"step"}),
	}

	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.requestTime, m.jobsEnded, m.results, m.stepTime, m.stepFailures,
		&jobsCollector{count: count, logger: logger, desc: prometheus.NewDesc(
			namespace+"_jobs", "Active jobs across the service, by status.", []string{"status"}, nil)},
	)

	return m
}

// Handler serves the metrics in Prometheus's format. While the database
// is down the job counts are left out and the rest is still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Middleware records every HTTP request by its route, not its path, so
// that job ids do not become labels.
func (m *Metrics) Middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}

		route := c.Path()
		if route == "" {
			route = "unmatched"
		}

		method := c.Request().Method
		if !knownMethods[method] {
			method = "other" // clients choose methods; labels must stay few
		}

		m.requests.WithLabelValues(method, route, strconv.Itoa(c.Response().Status)).Inc()
		m.requestTime.WithLabelValues(method, route).Observe(time.Since(start).Seconds())

		return nil
	}
}

// knownMethods are the HTTP methods recorded under their own name.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// JobEnded counts a job this replica ended.
func (m *Metrics) JobEnded(status string) {
	if m != nil {
		m.jobsEnded.WithLabelValues(status).Inc()
	}
}

// ResultsAccepted counts worker results kept for the first time.
func (m *Metrics) ResultsAccepted(n int) {
	if m != nil {
		m.results.Add(float64(n))
	}
}

// Step records the time of an engine step, and whether it failed.
func (m *Metrics) Step(step string, start time.Time, failed bool) {
	if m == nil {
		return
	}

	m.stepTime.WithLabelValues(step).Observe(time.Since(start).Seconds())
	if failed {
		m.stepFailures.WithLabelValues(step).Inc()
	}
}

// jobsCollector reads the active jobs from the database at scrape time.
type jobsCollector struct {
	count  JobCounter
	logger *slog.Logger
	desc   *prometheus.Desc
}

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()

	counts, err := c.count(ctx)
	if err != nil {
		c.logger.Warn("count jobs for metrics", slog.String("err", err.Error()))
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}

	for _, status := range []string{"pending", "running"} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[status]), status)
	}
}
