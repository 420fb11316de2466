package api

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/industrial-data/jobmanager/internal/job"
)

// publicError carries the text a client is shown for an error.
type publicError struct {
	err error
	msg string
}

func (e *publicError) Error() string { return e.err.Error() }
func (e *publicError) Unwrap() error { return e.err }

// withMessage gives err the text a client sees instead of the default one
// for its status.
func withMessage(err error, msg string) error {
	return &publicError{err: err, msg: msg}
}

// statuses maps domain errors to the status codes clients see. An error
// that matches none of them is the service's own failure: 500.
var statuses = []struct {
	err    error
	status int
}{
	{job.ErrInvalid, http.StatusBadRequest},
	{job.ErrNotFound, http.StatusNotFound},
	{job.ErrConflict, http.StatusConflict},
	{errTooLarge, http.StatusRequestEntityTooLarge},
	{errUnsupportedMediaType, http.StatusUnsupportedMediaType},
}

// errorHandler answers every error a handler returns. Clients get a status
// and a short text; the cause of a 500 only reaches the log.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}

		status, msg := classify(err)

		req := c.Request()
		attrs := []any{
			slog.String("method", req.Method),
			slog.String("path", req.URL.Path),
			slog.Int("status", status),
			slog.String("err", err.Error()),
		}

		if status >= http.StatusInternalServerError {
			logger.ErrorContext(req.Context(), "request failed", attrs...)
		} else {
			logger.WarnContext(req.Context(), "request refused", attrs...)
		}

		if req.Method == http.MethodHead {
			err = c.NoContent(status)
		} else {
			err = c.String(status, msg)
		}

		if err != nil {
			logger.ErrorContext(req.Context(), "write error answer", slog.String("err", err.Error()))
		}
	}
}

// classify picks the status and the client's text for an error.
func classify(err error) (int, string) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he.Code, http.StatusText(he.Code)
	}

	for _, s := range statuses {
		if !errors.Is(err, s.err) {
			continue
		}

		var pub *publicError
		if errors.As(err, &pub) {
			return s.status, pub.msg
		}

		if s.err == job.ErrInvalid {
			// Validation errors are written for the client.
			return s.status, err.Error()
		}

		return s.status, s.err.Error()
	}

	return http.StatusInternalServerError, http.StatusText(http.StatusInternalServerError)
}
