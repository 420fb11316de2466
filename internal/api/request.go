package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"
)

// errUnsupportedMediaType answers a body that is not declared as JSON.
var errUnsupportedMediaType = errors.New("content type must be application/json")

// errTooLarge answers a body over the size limit.
var errTooLarge = errors.New("request body is too large")

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

		return nil, fmt.Errorf("read body: %w", err)
	}

	return body, nil
}
