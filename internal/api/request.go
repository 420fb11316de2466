package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/industrial-data/jobmanager/internal/job"
)

// errUnsupportedMediaType answers a body that is not declared as JSON.
var errUnsupportedMediaType = errors.New("content type must be application/json")

// errTooLarge answers a body over the size limit.
var errTooLarge = errors.New("request body is too large")

// knownID answers 404 at once for an id that no job can have: every job
// id is 22 characters of URL-safe base64 (see job.ID).
func knownID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !job.ValidID(c.Param("id")) {
			return job.ErrNotFound
		}

		return next(c)
	}
}

// requireJSON turns away requests whose body is not declared as JSON.
func requireJSON(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		mediaType, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
		if err != nil || mediaType != echo.MIMEApplicationJSON {
			return errUnsupportedMediaType
		}

		return next(c)
	}
}

// readBody reads the request body, refusing one over limit bytes.
func readBody(c echo.Context, limit int64) ([]byte, error) {
	req := c.Request()
	if req.ContentLength > limit {
		return nil, errTooLarge
	}

	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errTooLarge
		}

		if errors.Is(err, io.ErrUnexpectedEOF) {
			// The client went away, or sent less than it announced.
			return nil, fmt.Errorf("%w: body ended early", job.ErrInvalid)
		}

		return nil, fmt.Errorf("read body: %w", err)
	}

	return body, nil
}
