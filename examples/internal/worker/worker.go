// Package worker holds what the example workers share: the worker
// contract. A worker finds its configs and inputs in environment
// variables, its files under DATA_CACHE_PATH (default /data_cache), and
// posts its result, keyed by DEP_INSTANCE, to the URL in JOB_CALLBACK_URL
// (or in the variable CALLBACK_ENV_VAR names, for a job manager whose
// CONF_WORKERCALLBACK_ENV_VAR is not the default). The config
// delay_seconds makes a worker wait that long before it starts, which
// leaves time to watch a job run, or to abort it.
package worker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Output is one output object of a result.
type Output map[string]any

// Env is what a worker is given.
type Env struct {
	// Cache is the data cache directory.
	Cache string
}

// Get returns an input or config, or def when it is not set.
func (Env) Get(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}

	return def
}

// Path returns the path of a data-cache file.
func (e Env) Path(name string) string {
	return filepath.Join(e.Cache, filepath.Base(name))
}

// NewFile returns the name of a new data-cache file.
func NewFile() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)

	return hex.EncodeToString(b)
}

// Run does the worker's work and posts its result. A worker that fails
// posts nothing and exits with status 1; the job manager notices that it
// stopped without results.
func Run(name string, work func(Env) ([]Output, error)) {
	if err := run(work); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func run(work func(Env) ([]Output, error)) error {
	env := Env{Cache: Env{}.Get("DATA_CACHE_PATH", "/data_cache")}

	callback := env.Get(env.Get("CALLBACK_ENV_VAR", "JOB_CALLBACK_URL"), "")
	instance := env.Get("DEP_INSTANCE", "")
	if callback == "" || instance == "" {
		return fmt.Errorf("JOB_CALLBACK_URL and DEP_INSTANCE must be set")
	}

	if delay := env.Get("delay_seconds", ""); delay != "" {
		seconds, err := strconv.ParseFloat(delay, 64)
		if err != nil {
			return fmt.Errorf("delay_seconds: %w", err)
		}

		fmt.Printf("waiting %gs as configured\n", seconds)
		time.Sleep(time.Duration(seconds * float64(time.Second)))
	}

	outputs, err := work(env)
	if err != nil {
		return err
	}

	for _, o := range outputs {
		fmt.Println("output:", string(mustJSON(o)))
	}

	return post(callback, mustJSON(map[string][]Output{instance: outputs}))
}

// post delivers the result, trying again for a while if the job manager
// cannot be reached or fails.
func post(url string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for {
		err := postOnce(ctx, url, body)
		if err == nil || ctx.Err() != nil {
			return err
		}

		fmt.Fprintln(os.Stderr, "post result, will retry:", err)
		time.Sleep(time.Second)
	}
}

func postOnce(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}

	req.Header.Set("Content-Type", "application/json")

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusOK:
		fmt.Printf("result posted: %s\n", answer)
		return nil
	case resp.StatusCode >= 500:
		return fmt.Errorf("job manager answered %d: %s", resp.StatusCode, answer)
	default:
		// The job ended, or the result was malformed: retrying would not
		// help.
		fmt.Fprintf(os.Stderr, "result refused with %d: %s\n", resp.StatusCode, answer)
		return nil
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}

	return b
}
