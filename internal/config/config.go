// Package config reads the service's settings from the environment. The
// original job manager's CONF_* variables keep their names and defaults;
// settings the original did not have are prefixed JOBMANAGER_.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config holds every setting of the service.
type Config struct {
	// DatabaseURL is the PostgreSQL connection string.
	DatabaseURL string `env:"DATABASE_URL,required,notEmpty"`
	// ListenAddr is where the HTTP server listens.
	ListenAddr string `env:"JOBMANAGER_LISTEN_ADDR" envDefault:":8080"`
	// LogLevel is the lowest level logged: debug, info, warning or error.
	LogLevel LogLevel `env:"CONF_LOGGER_LEVEL" envDefault:"info"`

	PipelineRegistryURL  string `env:"CONF_PIPELINEREGISTRY_URL" envDefault:"http://pipeline-registry"`
	PipelineRegistryAPI  string `env:"CONF_PIPELINEREGISTRY_API" envDefault:"pipelines"`
	DeploymentManagerURL string `env:"CONF_DEPLOYMENTMANAGER_URL" envDefault:"http://deployment-manager"`
	DeploymentManagerAPI string `env:"CONF_DEPLOYMENTMANAGER_API" envDefault:"deployments"`
	MachineRegistryURL   string `env:"CONF_MACHINEREGISTRY_URL" envDefault:"http://machine-registry"`
	MachineRegistryAPI   string `env:"CONF_MACHINEREGISTRY_API" envDefault:"machines"`

	// WorkerCallbackEnvVar names the worker config variable that carries
	// the URL a worker posts its result to.
	WorkerCallbackEnvVar string `env:"CONF_WORKERCALLBACK_ENV_VAR" envDefault:"JOB_CALLBACK_URL"`
	WorkerCallbackURL    string `env:"CONF_WORKERCALLBACK_URL" envDefault:"http://job-manager"`
	WorkerCallbackAPI    string `env:"CONF_WORKERCALLBACK_API" envDefault:"jobs"`

	// JobsMaxNum caps the jobs running at once, across every replica.
	JobsMaxNum int `env:"CONF_JOBS_MAX_NUM" envDefault:"2"`
	// JobsCheck is how often a running worker is checked on.
	JobsCheck Seconds `env:"CONF_JOBS_CHECK" envDefault:"5"`
	// DataCachePath is where workers' files live.
	DataCachePath string `env:"CONF_DATACACHE_PATH" envDefault:"/data_cache"`

	// StageWorkers caps the workers of one single-input stage that run at
	// once. The original started them one after another.
	StageWorkers int `env:"JOBMANAGER_STAGE_WORKERS" envDefault:"1"`
	// Lease is how long a replica may take over a step that calls a peer
	// before another replica assumes it died and takes the step over.
	Lease time.Duration `env:"JOBMANAGER_LEASE" envDefault:"30s"`
	// PeerTimeout bounds every call to a registry or the deployment manager.
	PeerTimeout time.Duration `env:"JOBMANAGER_PEER_TIMEOUT" envDefault:"10s"`
	// Poll is how often each replica asks the database for due work:
	// pending jobs, worker checks, and steps left behind by a replica that
	// died.
	Poll time.Duration `env:"JOBMANAGER_POLL_INTERVAL" envDefault:"1s"`
	// Registry picks where data sources and pipelines come from: "http",
	// the platform's registries, or "file", the platform file.
	Registry string `env:"JOBMANAGER_REGISTRY" envDefault:"http"`
	// Launcher picks what runs workers: "http", the platform's deployment
	// manager, or "local", local processes named in the platform file.
	Launcher string `env:"JOBMANAGER_LAUNCHER" envDefault:"http"`
	// PlatformFile is the JSON file the file registry and the local
	// launcher read.
	PlatformFile string `env:"JOBMANAGER_PLATFORM_FILE"`
	// KeepOutputFiles leaves the data-cache files of ended jobs in place.
	KeepOutputFiles bool `env:"JOBMANAGER_KEEP_OUTPUT_FILES" envDefault:"false"`
	// DebugAddr, when set, is where Go's profiler (net/http/pprof) is
	// served, apart from the API.
	DebugAddr string `env:"JOBMANAGER_DEBUG_ADDR"`
	// MaxBodyBytes is the largest request body accepted.
	MaxBodyBytes int64 `env:"JOBMANAGER_MAX_BODY_BYTES" envDefault:"4194304"`
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration `env:"JOBMANAGER_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// DrainDelay is how long a stopping replica goes on serving while it
	// reports not ready, so that load balancers stop sending it requests
	// before it stops listening. It comes before the shutdown timeout.
	DrainDelay time.Duration `env:"JOBMANAGER_DRAIN_DELAY" envDefault:"0s"`
}

// Load reads the settings from environ, a list of KEY=value pairs as
// os.Environ returns, and checks them.
func Load(environ []string) (Config, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}

	var cfg Config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		return Config{}, nameVariables(err)
	}

	if err := unknownSettings(vars); err != nil {
		return Config{}, err
	}

	if err := cfg.validate(); err != nil {
		return Config{}, err
	}

	return cfg, nil
}

// unknownSettings refuses variables in the service's own namespaces
// (CONF_, JOBMANAGER_) that it does not read, or that are set to nothing:
// either would otherwise be ignored without a word.
func unknownSettings(vars map[string]string) error {
	known := map[string]bool{}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("env"), ",")
		known[name] = true
	}

	var errs []error
	for name, value := range vars {
		ours := (strings.HasPrefix(name, "CONF_") || strings.HasPrefix(name, "JOBMANAGER_")) &&
			!serviceLink.MatchString(name)
		switch {
		case ours && !known[name]:
			errs = append(errs, fmt.Errorf("%s is not a setting of the job manager (misspelt?)", name))
		case ours && value == "" && name != "JOBMANAGER_PLATFORM_FILE" && name != "JOBMANAGER_DEBUG_ADDR":
			// An empty value would silently mean the default.
			errs = append(errs, fmt.Errorf("%s is set but empty; unset it for the default", name))
		}
	}

	return errors.Join(errs...)
}

// nameVariables rewrites the errors of values that could not be read so
// that they name the environment variable rather than the Go field.
func nameVariables(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("read settings: %w", err)
	}

	errs := make([]error, len(agg.Errors))
	for i, e := range agg.Errors {
		errs[i] = e

		var pe env.ParseError
		if !errors.As(e, &pe) {
			continue
		}

		if field, ok := reflect.TypeOf(Config{}).FieldByName(pe.Name); ok {
			name, _, _ := strings.Cut(field.Tag.Get("env"), ",")
			errs[i] = fmt.Errorf("%s: %w", name, pe.Err)
		}
	}

	return errors.Join(errs...)
}

func (c Config) validate() error {
	var errs []error
	if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		errs = append(errs, fmt.Errorf("DATABASE_URL cannot be used: %w", err))
	}

	for _, u := range []struct{ name, value string }{
		{"CONF_PIPELINEREGISTRY_URL", c.PipelineRegistryURL},
		{"CONF_DEPLOYMENTMANAGER_URL", c.DeploymentManagerURL},
		{"CONF_MACHINEREGISTRY_URL", c.MachineRegistryURL},
		{"CONF_WORKERCALLBACK_URL", c.WorkerCallbackURL},
	} {
		parsed, err := url.Parse(u.value)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			errs = append(errs, fmt.Errorf("%s must be an http or https URL, got %q", u.name, u.value))
		}
	}

	for _, n := range []struct {
		name  string
		value int64
	}{
		{"CONF_JOBS_MAX_NUM", int64(c.JobsMaxNum)},
		{"JOBMANAGER_STAGE_WORKERS", int64(c.StageWorkers)},
		{"JOBMANAGER_MAX_BODY_BYTES", c.MaxBodyBytes},
	} {
		if n.value < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, got %d", n.name, n.value))
		}
	}

	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"CONF_JOBS_CHECK", time.Duration(c.JobsCheck)},
		{"JOBMANAGER_LEASE", c.Lease},
		{"JOBMANAGER_POLL_INTERVAL", c.Poll},
		{"JOBMANAGER_PEER_TIMEOUT", c.PeerTimeout},
		{"JOBMANAGER_SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
	} {
		if d.value <= 0 || d.value > 24*time.Hour {
			errs = append(errs, fmt.Errorf("%s must be positive and at most a day, got %s", d.name, d.value))
		}
	}

	if c.DrainDelay < 0 {
		errs = append(errs, fmt.Errorf("JOBMANAGER_DRAIN_DELAY must not be negative, got %s", c.DrainDelay))
	}

	if c.Poll > 0 && c.Poll < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("JOBMANAGER_POLL_INTERVAL must be at least 10ms, got %s", c.Poll))
	}

	if !envName.MatchString(c.WorkerCallbackEnvVar) {
		errs = append(errs, fmt.Errorf("CONF_WORKERCALLBACK_ENV_VAR must be a variable name, got %q",
			c.WorkerCallbackEnvVar))
	}

	for _, a := range []struct{ name, value string }{
		{"JOBMANAGER_LISTEN_ADDR", c.ListenAddr},
		{"JOBMANAGER_DEBUG_ADDR", c.DebugAddr},
	} {
		if a.value == "" && a.name == "JOBMANAGER_DEBUG_ADDR" {
			continue
		}

		if _, _, err := net.SplitHostPort(a.value); err != nil {
			errs = append(errs, fmt.Errorf("%s must be host:port or :port, got %q", a.name, a.value))
		}
	}

	if c.Lease <= c.PeerTimeout {
		errs = append(errs, fmt.Errorf("JOBMANAGER_LEASE (%s) must be longer than JOBMANAGER_PEER_TIMEOUT (%s)",
			c.Lease, c.PeerTimeout))
	}

	if c.Registry != "http" && c.Registry != "file" {
		errs = append(errs, fmt.Errorf("JOBMANAGER_REGISTRY must be http or file, got %q", c.Registry))
	}

	if c.Launcher != "http" && c.Launcher != "local" {
		errs = append(errs, fmt.Errorf("JOBMANAGER_LAUNCHER must be http or local, got %q", c.Launcher))
	}

	if (c.Registry == "file" || c.Launcher == "local") && c.PlatformFile == "" {
		errs = append(errs, errors.New(
			"JOBMANAGER_PLATFORM_FILE must be set for the file registry or the local launcher"))
	}

	return errors.Join(errs...)
}

// serviceLink matches the variables Kubernetes sets for a Service named
// jobmanager (JOBMANAGER_SERVICE_HOST, JOBMANAGER_PORT_80_TCP, ...), which
// are no settings.
var serviceLink = regexp.MustCompile(`^JOBMANAGER_(SERVICE_[A-Z0-9_]+|PORT(_[A-Z0-9_]+)?)$`)

// envName matches a name a worker's environment variable can have.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// LogAttrs returns the settings for the start-up log line, with the
// database password masked.
func (c Config) LogAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("database_url", maskURL(c.DatabaseURL)),
		slog.String("listen_addr", c.ListenAddr),
		slog.String("log_level", slog.Level(c.LogLevel).String()),
		slog.String("pipeline_registry", maskURL(c.PipelineRegistryURL)+"/"+c.PipelineRegistryAPI),
		slog.String("machine_registry", maskURL(c.MachineRegistryURL)+"/"+c.MachineRegistryAPI),
		slog.String("deployment_manager", maskURL(c.DeploymentManagerURL)+"/"+c.DeploymentManagerAPI),
		slog.String("worker_callback", maskURL(c.WorkerCallbackURL)+"/"+c.WorkerCallbackAPI),
		slog.String("worker_callback_env_var", c.WorkerCallbackEnvVar),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
		slog.String("drain_delay", c.DrainDelay.String()),
		slog.Int("jobs_max_num", c.JobsMaxNum),
		slog.String("jobs_check", time.Duration(c.JobsCheck).String()),
		slog.String("data_cache_path", c.DataCachePath),
		slog.Int("stage_workers", c.StageWorkers),
		slog.String("lease", c.Lease.String()),
		slog.String("peer_timeout", c.PeerTimeout.String()),
		slog.String("poll_interval", c.Poll.String()),
		slog.String("registry", c.Registry),
		slog.String("launcher", c.Launcher),
		slog.String("platform_file", c.PlatformFile),
		slog.Bool("keep_output_files", c.KeepOutputFiles),
		slog.String("debug_addr", c.DebugAddr),
	}
}

// maskURL hides the password of a URL. A string that is not a URL (a
// key=value connection string) is hidden whole.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "(hidden)"
	}

	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}

	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}

	return u.String()
}

// maxSeconds bounds a setting in seconds: a day is more than any check
// interval needs.
const maxSeconds = 24 * 60 * 60

// Seconds is a duration written as a number of seconds, as the original
// service's CONF_JOBS_CHECK is.
type Seconds time.Duration

// UnmarshalText reads a number of seconds, fractions allowed.
func (s *Seconds) UnmarshalText(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || f > maxSeconds {
		return fmt.Errorf("not a number of seconds up to a day: %q", b)
	}

	*s = Seconds(f * float64(time.Second))

	return nil
}

// LogLevel is a log level named as the original service named them.
type LogLevel slog.Level

// String names the level as slog does.
func (l LogLevel) String() string {
	return slog.Level(l).String()
}

// UnmarshalText reads debug, info, warning (or warn) and error, in any
// case; critical counts as error.
func (l *LogLevel) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "debug":
		*l = LogLevel(slog.LevelDebug)
	case "info":
		*l = LogLevel(slog.LevelInfo)
	case "warning", "warn":
		*l = LogLevel(slog.LevelWarn)
	case "error", "critical":
		*l = LogLevel(slog.LevelError)
	default:
		return fmt.Errorf("unknown log level %q", b)
	}

	return nil
}
