package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/industrial-data/jobmanager/internal/pgserver"
	"github.com/industrial-data/jobmanager/internal/platformtest"
)

// cleanups runs registered functions in reverse, like testing.T.Cleanup.
type cleanups []func()

func (c *cleanups) Cleanup(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

// database creates a fresh database for the run and returns its URL and
// the URL of the server's maintenance database.
func database(ctx context.Context, adminURL string, c *cleanups) (string, string, error) {
	if adminURL == "" {
		adminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
		if conn, err := net.DialTimeout("tcp", "127.0.0.1:5432", time.Second); err == nil {
			conn.Close()
		} else {
			server, err := pgserver.Start(".data/bench-pg")
			if err != nil {
				return "", "", err
			}

			adminURL = server.URL("postgres")
		}
	}

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "jobmanager_bench_" + hex.EncodeToString(b)

	if err := adminExec(ctx, adminURL, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("create database: %w", err)
	}

	c.Cleanup(func() {
		_ = adminExec(context.Background(), adminURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})

	u, err := url.Parse(adminURL)
	if err != nil {
		return "", "", err
	}

	u.Path = "/" + name

	return u.String(), adminURL, nil
}

func adminExec(ctx context.Context, adminURL, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)

	_, err = conn.Exec(ctx, sql)

	return err
}

// replica is one process of the service.
type replica struct {
	url   string
	debug string // address of the profiler, when served
	cmd   *exec.Cmd
}

// startReplicas starts n replicas and waits until each is ready.
func startReplicas(s settings, dbURL string, p *platformtest.Platform, c *cleanups) ([]*replica, error) {
	env := append(os.Environ(),
		"DATABASE_URL="+dbURL,
		"CONF_LOGGER_LEVEL=warning",
		"CONF_WORKERCALLBACK_URL=http://callback.invalid",
		"CONF_JOBS_MAX_NUM="+strconv.Itoa(s.maxJobs),
	)
	for k, v := range p.Settings() {
		env = append(env, k+"="+v)
	}

	logDir, err := os.MkdirTemp("", "jobmanager-bench-")
	if err != nil {
		return nil, err
	}

	var replicas []*replica
	for i := range s.replicas {
		port, err := freePort()
		if err != nil {
			return nil, err
		}

		logFile, err := os.Create(filepath.Join(logDir, fmt.Sprintf("replica-%d.log", i)))
		if err != nil {
			return nil, err
		}

		cmd := exec.Command(s.binary)
		cmd.Env = append(env, fmt.Sprintf("JOBMANAGER_LISTEN_ADDR=127.0.0.1:%d", port))

		var debug string
		if i == 0 && s.cpuProfile != "" {
			debugPort, err := freePort()
			if err != nil {
				return nil, err
			}

			debug = fmt.Sprintf("127.0.0.1:%d", debugPort)
			cmd.Env = append(cmd.Env, "JOBMANAGER_DEBUG_ADDR="+debug)
		}

		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", s.binary, err)
		}

		r := &replica{url: fmt.Sprintf("http://127.0.0.1:%d", port), debug: debug, cmd: cmd}
		replicas = append(replicas, r)
		c.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logFile.Close()
		})
	}

	c.Cleanup(func() { os.RemoveAll(logDir) })

	for _, r := range replicas {
		if err := waitReady(r.url); err != nil {
			return nil, fmt.Errorf("%w (logs in %s)", err, logDir)
		}
	}

	return replicas, nil
}

func waitReady(base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}

		time.Sleep(50 * time.Millisecond)
	}

	return errors.New("replica " + base + " did not get ready")
}

// roundRobin spreads requests over the replicas, as a load balancer would.
type roundRobin struct {
	replicas []*replica
	next     atomic.Uint64
}

func (r *roundRobin) url() string {
	return r.replicas[r.next.Add(1)%uint64(len(r.replicas))].url
}

// rewrite points a worker's callback URL at the next replica.
func (r *roundRobin) rewrite(target string) string {
	return r.url() + target[strings.Index(target, "/jobs/"):]
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()

	return l.Addr().(*net.TCPAddr).Port, nil
}
