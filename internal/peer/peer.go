// Package peer talks to the platform services the job manager depends on:
// the data-source registry, the pipeline registry and the deployment
// manager. Every call is bounded by the client's timeout.
package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/industrial-data/jobmanager/internal/job"
)

// maxAnswer is the most of a peer's answer that is read.
const maxAnswer = 16 << 20

// StatusError is a peer's answer with an unexpected status code.
type StatusError struct {
	Code int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("answered %d %s", e.Code, http.StatusText(e.Code))
}

// Endpoint joins a service URL and an API path as the original did:
// {url}/{api}.
func Endpoint(serviceURL, api string) string {
	return strings.TrimRight(serviceURL, "/") + "/" + strings.Trim(api, "/")
}

// Registries reads data sources and pipelines from their HTTP registries.
type Registries struct {
	client       *http.Client
	dataSources  string
	pipelinesURL string
}

// NewRegistries returns a client of the data-source registry at
// dataSources and the pipeline registry at pipelines, each given as
// {url}/{api}.
func NewRegistries(client *http.Client, dataSources, pipelines string) *Registries {
	return &Registries{client: client, dataSources: dataSources, pipelinesURL: pipelines}
}

// DataSource looks up a data source by its id.
func (r *Registries) DataSource(ctx context.Context, dsID string) (job.DataSource, error) {
	body, err := call(ctx, r.client, http.MethodGet, r.dataSources+"/"+segment(dsID), nil)
	if err != nil {
		return job.DataSource{}, fmt.Errorf("get data source %s: %w", dsID, err)
	}

	ds, err := job.ParseDataSource(body)
	if err != nil {
		return job.DataSource{}, fmt.Errorf("data source %s: %w", dsID, err)
	}

	return ds, nil
}

// Pipeline fetches a pipeline by its id, as the registry wrote it.
func (r *Registries) Pipeline(ctx context.Context, id string) (json.RawMessage, error) {
	body, err := call(ctx, r.client, http.MethodGet, r.pipelinesURL+"/"+segment(id), nil)
	if err != nil {
		return nil, fmt.Errorf("get pipeline %s: %w", id, err)
	}

	if !json.Valid(body) {
		return nil, fmt.Errorf("%w: pipeline %s is not valid JSON", job.ErrBadPipeline, id)
	}

	return body, nil
}

// Deployments starts, watches and removes workers through the deployment
// manager.
type Deployments struct {
	client *http.Client
	url    string
}

// NewDeployments returns a client of the deployment manager at url, given
// as {url}/{api}.
func NewDeployments(client *http.Client, url string) *Deployments {
	return &Deployments{client: client, url: url}
}

// Start asks for a worker and returns the id of its instance.
func (d *Deployments) Start(ctx context.Context, request json.RawMessage) (string, error) {
	body, err := call(ctx, d.client, http.MethodPost, d.url, request)
	if err != nil {
		return "", fmt.Errorf("start worker: %w", err)
	}

	instance := strings.TrimSpace(string(body))
	var quoted string
	if json.Unmarshal(body, &quoted) == nil {
		instance = quoted
	}

	if instance == "" || strings.ContainsAny(instance, "/?#") {
		return "", fmt.Errorf("start worker: unusable instance id %q", instance)
	}

	return instance, nil
}

// Alive reports whether an instance still runs: the deployment manager
// answers 200 and does not call it stopped.
func (d *Deployments) Alive(ctx context.Context, instance string) (bool, error) {
	body, err := call(ctx, d.client, http.MethodGet, d.instanceURL(instance), nil)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			return false, nil
		}

		return false, fmt.Errorf("check worker %s: %w", instance, err)
	}

	var state struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(body, &state) == nil && state.Status == "stopped" {
		return false, nil
	}

	return true, nil
}

// Log returns what an instance wrote.
func (d *Deployments) Log(ctx context.Context, instance string) (string, error) {
	body, err := call(ctx, d.client, http.MethodGet, d.instanceURL(instance)+"/log", nil)
	if err != nil {
		return "", fmt.Errorf("get log of worker %s: %w", instance, err)
	}

	return string(body), nil
}

// Remove stops and removes an instance. One that is already gone counts as
// removed.
func (d *Deployments) Remove(ctx context.Context, instance string) error {
	_, err := call(ctx, d.client, http.MethodDelete, d.instanceURL(instance), nil)

	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil
	}

	if err != nil {
		return fmt.Errorf("remove worker %s: %w", instance, err)
	}

	return nil
}

func (d *Deployments) instanceURL(instance string) string {
	return d.url + "/" + segment(instance)
}

// segment escapes an id as one path segment. Dots are escaped too when
// they make up the whole segment, so that "." and ".." name no other
// resource.
func segment(id string) string {
	escaped := url.PathEscape(id)
	if escaped == "." || escaped == ".." {
		return strings.ReplaceAll(escaped, ".", "%2E")
	}

	return escaped
}

// call makes one request and returns the body of a 2xx answer.
func call(ctx context.Context, client *http.Client, method, target string, body []byte) ([]byte, error) {
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}

	req, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		return nil, err
	}

	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &StatusError{Code: resp.StatusCode}
	}

	return answer, nil
}

// userAgent sets the User-Agent of every request, so that the platform's
// logs tell which replica made a call.
type userAgent struct {
	next http.RoundTripper
	name string
}

// WithUserAgent returns a transport that names the caller as agent.
func WithUserAgent(next http.RoundTripper, agent string) http.RoundTripper {
	return userAgent{next: next, name: agent}
}

func (u userAgent) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", u.name)

	return u.next.RoundTrip(req)
}
