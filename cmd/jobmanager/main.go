// Command jobmanager runs the job manager service.
//
// Usage:
//
//	jobmanager [serve]   apply migrations, then serve the API and run jobs
//	jobmanager migrate   apply migrations and exit
//
// Settings come from the environment; see the README.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/industrial-data/jobmanager/internal/api"
	"github.com/industrial-data/jobmanager/internal/config"
	"github.com/industrial-data/jobmanager/internal/engine"
	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/local"
	"github.com/industrial-data/jobmanager/internal/metrics"
	"github.com/industrial-data/jobmanager/internal/peer"
	"github.com/industrial-data/jobmanager/internal/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout)
	stop()

	if err != nil {
		fmt.Fprintln(os.Stderr, "jobmanager:", err)
		os.Exit(1)
	}
}

// run does what args ask, with settings from environ, logging to out.
func run(ctx context.Context, args, environ []string, out io.Writer) error {
	command := "serve"
	if len(args) > 0 {
		command = args[0]
	}

	if (command != "serve" && command != "migrate") || len(args) > 1 {
		return fmt.Errorf("usage: jobmanager [serve|migrate], got %q", args)
	}

	cfg, err := config.Load(environ)
	if err != nil {
		return err
	}

	logger := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.Level(cfg.LogLevel)}))
	logger.LogAttrs(ctx, slog.LevelInfo, "settings", cfg.LogAttrs()...)

	if command == "migrate" {
		return migrate(ctx, cfg, logger)
	}

	// What can fail without the database fails before it is touched.
	replica := replicaName()
	logger = logger.With(slog.String("replica", replica))

	registry, launcher, closePlatform, err := platform(cfg, replica)
	if err != nil {
		return err
	}
	defer closePlatform()

	if _, err := os.Stat(cfg.DataCachePath); err != nil {
		logger.Warn("data cache cannot be read; output files of ended jobs will not be deleted",
			slog.String("err", err.Error()))
	}

	listener, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("JOBMANAGER_LISTEN_ADDR: %w", err)
	}
	defer listener.Close()

	if cfg.DebugAddr != "" {
		debug, err := net.Listen("tcp", cfg.DebugAddr)
		if err != nil {
			return fmt.Errorf("JOBMANAGER_DEBUG_ADDR: %w", err)
		}

		go serveDebug(debug, logger)
	}

	pool, err := connect(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer pool.Close()

	return serve(ctx, cfg, pool, logger, replica, registry, launcher, listener)
}

// migrate applies the migrations and exits.
func migrate(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	pool, err := connect(ctx, cfg, logger)
	if err != nil {
		return err
	}

	pool.Close()

	return nil
}

// connect opens the connection pool and brings the schema up to date.
func connect(ctx context.Context, cfg config.Config, logger *slog.Logger) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}

	if err := store.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}

	logger.Info("migrations applied")

	return pool, nil
}

// platform builds the registry and the launcher the settings choose: the
// platform's HTTP services, or their stand-ins from the platform file.
func platform(cfg config.Config, replica string) (engine.Registry, engine.Launcher, func(), error) {
	client := &http.Client{
		Timeout:   cfg.PeerTimeout,
		Transport: peer.WithUserAgent(http.DefaultTransport, "jobmanager/"+replica),
	}

	var registry engine.Registry = peer.NewRegistries(client,
		peer.Endpoint(cfg.MachineRegistryURL, cfg.MachineRegistryAPI),
		peer.Endpoint(cfg.PipelineRegistryURL, cfg.PipelineRegistryAPI))
	var launcher engine.Launcher = peer.NewDeployments(client,
		peer.Endpoint(cfg.DeploymentManagerURL, cfg.DeploymentManagerAPI))

	if cfg.Registry == "http" && cfg.Launcher == "http" {
		return registry, launcher, func() {}, nil
	}

	file, err := local.Load(cfg.PlatformFile)
	if err != nil {
		return nil, nil, nil, err
	}

	if cfg.Registry == "file" {
		registry = local.NewRegistry(file)
	}

	closer := func() {}
	if cfg.Launcher == "local" {
		l := local.NewLauncher(file, cfg.DataCachePath, []string{"PATH=" + os.Getenv("PATH")})
		launcher, closer = l, l.Close
	}

	return registry, launcher, closer, nil
}

// serve runs the API and the engine until ctx ends, then stops both
// within the shutdown timeout.
func serve(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, logger *slog.Logger,
	replica string, registry engine.Registry, launcher engine.Launcher, listener net.Listener) error {
	st := store.New(pool)
	st.SetOptions(store.Options{
		Lease:        cfg.Lease,
		Check:        time.Duration(cfg.JobsCheck),
		StageWorkers: cfg.StageWorkers,
		Start: job.StartSettings{
			CallbackEnvVar: cfg.WorkerCallbackEnvVar,
			CallbackURL:    peer.Endpoint(cfg.WorkerCallbackURL, cfg.WorkerCallbackAPI),
		},
		KeepFiles: cfg.KeepOutputFiles,
		Owner:     replica,
	})

	meters := metrics.New(st.CountActiveJobs, logger)
	eng := engine.New(st, registry, launcher, logger, engine.Options{
		Metrics:     meters,
		MaxJobs:     cfg.JobsMaxNum,
		Poll:        cfg.Poll,
		DataCache:   cfg.DataCachePath,
		StepTimeout: cfg.Lease,
	})

	var stopping atomic.Bool
	probe := readiness(pool, &stopping)
	handler := api.New(eng, logger, api.Options{
		MaxBodyBytes: cfg.MaxBodyBytes,
		Ready:        probe,
		Metrics:      meters.Handler(),
		Observe:      meters.Middleware,
	})
	server := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// A client that stalls mid-body is cut off rather than holding a
		// connection and a goroutine for ever.
		ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute,
	}

	logger.Info("serving", slog.String("addr", listener.Addr().String()))

	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(listener) }()

	engineCtx, stopEngine := context.WithCancel(ctx)
	defer stopEngine()

	engineDone := make(chan struct{})
	go func() {
		eng.Run(engineCtx)
		close(engineDone)
	}()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	return shutdown(cfg, logger, server, eng, &stopping, stopEngine, engineDone)
}

// shutdown stops a replica gracefully: it reports not ready and stops
// claiming work at once, goes on serving for the drain delay, then lets
// requests under way finish, waits for the engine's steps, and hands back
// the leases it still holds, all within the shutdown timeout.
func shutdown(cfg config.Config, logger *slog.Logger, server *http.Server, eng *engine.Engine,
	stopping *atomic.Bool, stopEngine func(), engineDone <-chan struct{}) error {
	logger.Info("shutting down")
	stopping.Store(true)
	stopEngine()
	<-engineDone

	// Go on serving, not ready, until load balancers have noticed.
	time.Sleep(cfg.DrainDelay)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()

	var errs []error
	if err := server.Shutdown(ctx); err != nil {
		// Connections still open at the timeout are cut, as the timeout
		// says. They include connections a client opened but sent nothing
		// on, which the server only counts as idle after five seconds.
		logger.Warn("closing connections still open at the shutdown timeout", slog.String("err", err.Error()))
		if err := server.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close server: %w", err))
		}
	}

	if err := eng.Drain(ctx); err != nil {
		errs = append(errs, err)
	}

	logger.Info("stopped")

	return errors.Join(errs...)
}

// readiness reports whether the replica can serve: not stopping, the
// database answering within a second, and the schema up to date, which
// is checked each time: a database can be restored or replaced.
func readiness(pool *pgxpool.Pool, stopping *atomic.Bool) func(context.Context) error {
	return func(ctx context.Context) error {
		if stopping.Load() {
			return errors.New("shutting down")
		}

		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()

		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("database: %w", err)
		}

		ok, err := store.Migrated(ctx, pool)
		if err != nil {
			return err
		}

		if !ok {
			return errors.New("migrations pending")
		}

		return nil
	}
}

// serveDebug serves Go's profiler, for `go tool pprof`, on its own address
// so that it is never exposed with the API.
func serveDebug(listener net.Listener, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := server.Serve(listener); err != nil {
		logger.Error("debug server", slog.String("err", err.Error()))
	}
}

// replicaName names this replica on the leases it takes: the host name,
// which Kubernetes sets to the pod's name, and a random part, since a
// restarted container keeps both its pod's name and its process id.
func replicaName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}

	b := make([]byte, 4)
	_, _ = rand.Read(b)

	return host + "-" + hex.EncodeToString(b)
}
