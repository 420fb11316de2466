// Package api serves the job manager's HTTP API. Handlers parse requests
// and write answers; the rules live in the job and engine packages.
package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/industrial-data/jobmanager/internal/job"
)

// Jobs is what the API needs from the rest of the service.
type Jobs interface {
	// Submit adds a job and returns its id.
	Submit(ctx context.Context, req job.NewJob) (string, error)
	// Command applies an abort or workers' results to an active job.
	Command(ctx context.Context, id string, cmd job.Command) error
	ActiveJobs(ctx context.Context) ([]job.Document, error)
	ActiveJob(ctx context.Context, id string) (json.RawMessage, error)
	History(ctx context.Context) ([]job.Document, error)
	HistoryJob(ctx context.Context, id string) (json.RawMessage, error)
}

// Options tune the API.
type Options struct {
	// MaxBodyBytes is the largest request body accepted; larger ones get 413.
	MaxBodyBytes int64
	// Ready reports whether the replica can serve: nil when it can.
	Ready func(ctx context.Context) error
	// Metrics serves the Prometheus metrics, when set.
	Metrics http.Handler
	// Observe, when set, wraps every request, to record it.
	Observe echo.MiddlewareFunc
}

// New returns the HTTP handler of the API.
func New(jobs Jobs, logger *slog.Logger, opts Options) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(logger)

	e.Pre(middleware.RemoveTrailingSlash())
	if opts.Observe != nil {
		e.Use(opts.Observe)
	}

	e.Use(middleware.Recover())

	h := handlers{jobs: jobs, maxBody: opts.MaxBodyBytes}
	get(e, "/jobs", h.listJobs)
	e.POST("/jobs", h.submit, requireJSON)
	get(e, "/jobs/:id", h.getJob, knownID)
	e.POST("/jobs/:id", h.command, knownID, requireJSON)
	get(e, "/history", h.listHistory)
	get(e, "/history/:id", h.getHistory, knownID)

	get(e, "/livez", live)
	get(e, "/healthz", live)
	get(e, "/readyz", ready(opts.Ready, logger))
	if opts.Metrics != nil {
		get(e, "/metrics", echo.WrapHandler(opts.Metrics))
	}

	return e
}

// get routes GET and HEAD to a handler; load balancers often probe with
// HEAD.
func get(e *echo.Echo, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
	e.GET(path, h, m...)
	e.HEAD(path, h, m...)
}

type handlers struct {
	jobs    Jobs
	maxBody int64
}

func (h handlers) listJobs(c echo.Context) error {
	docs, err := h.jobs.ActiveJobs(c.Request().Context())
	if err != nil {
		return err
	}

	return writeDocuments(c, docs)
}

func (h handlers) getJob(c echo.Context) error {
	doc, err := h.jobs.ActiveJob(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}

	return c.JSONBlob(http.StatusOK, doc)
}

func (h handlers) listHistory(c echo.Context) error {
	docs, err := h.jobs.History(c.Request().Context())
	if err != nil {
		return err
	}

	return writeDocuments(c, docs)
}

func (h handlers) getHistory(c echo.Context) error {
	doc, err := h.jobs.HistoryJob(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}

	return c.JSONBlob(http.StatusOK, doc)
}

func (h handlers) submit(c echo.Context) error {
	body, err := readBody(c, h.maxBody)
	if err != nil {
		return err
	}

	req, err := job.ParseNewJob(body)
	if err != nil {
		return err
	}

	id, err := h.jobs.Submit(c.Request().Context(), req)
	if err != nil {
		// A client that submits a file twice learns the id of the job
		// that already runs it.
		return withMessage(err, id)
	}

	return c.String(http.StatusOK, id)
}

func (h handlers) command(c echo.Context) error {
	body, err := readBody(c, h.maxBody)
	if err != nil {
		return err
	}

	cmd, err := job.ParseCommand(body)
	if err != nil {
		return err
	}

	id := c.Param("id")
	if err := h.jobs.Command(c.Request().Context(), id, cmd); err != nil {
		return err
	}

	return c.String(http.StatusOK, id)
}

// live answers that the process runs; it asks nothing of the database, so
// that a database outage never gets replicas restarted.
func live(c echo.Context) error {
	return c.String(http.StatusOK, "ok")
}

// ready answers whether the replica can serve requests.
func ready(check func(ctx context.Context) error, logger *slog.Logger) echo.HandlerFunc {
	return func(c echo.Context) error {
		if check != nil {
			if err := check(c.Request().Context()); err != nil {
				logger.Warn("not ready", slog.String("err", err.Error()))
				return c.String(http.StatusServiceUnavailable, "not ready")
			}
		}

		return c.String(http.StatusOK, "ok")
	}
}

// writeDocuments answers with a JSON object from ids to documents, in the
// order given. The documents are copied as stored, never decoded.
func writeDocuments(c echo.Context, docs []job.Document) error {
	size := 2
	for _, d := range docs {
		size += len(d.ID) + len(d.JSON) + 6
	}

	buf := make([]byte, 0, size)
	buf = append(buf, '{')
	for i, d := range docs {
		if i > 0 {
			buf = append(buf, ',')
		}

		key, err := json.Marshal(d.ID)
		if err != nil {
			return err
		}

		buf = append(buf, key...)
		buf = append(buf, ':')
		buf = append(buf, d.JSON...)
	}
	buf = append(buf, '}')

	return c.JSONBlob(http.StatusOK, buf)
}
