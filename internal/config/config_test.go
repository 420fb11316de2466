package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/industrial-data/jobmanager/internal/config"
)

const dbURL = "DATABASE_URL=postgres://jm:secret@db/jm"

func TestDefaultsAreTheOriginalServices(t *testing.T) {
	t.Parallel()

	cfg, err := config.Load([]string{dbURL})
	require.NoError(t, err)

	assert.Equal(t, "http://pipeline-registry", cfg.PipelineRegistryURL)
	assert.Equal(t, "pipelines", cfg.PipelineRegistryAPI)
	assert.Equal(t, "http://deployment-manager", cfg.DeploymentManagerURL)
	assert.Equal(t, "deployments", cfg.DeploymentManagerAPI)
	assert.Equal(t, "http://machine-registry", cfg.MachineRegistryURL)
	assert.Equal(t, "machines", cfg.MachineRegistryAPI)
	assert.Equal(t, "http://job-manager", cfg.WorkerCallbackURL)
	assert.Equal(t, "jobs", cfg.WorkerCallbackAPI)
	assert.Equal(t, "JOB_CALLBACK_URL", cfg.WorkerCallbackEnvVar)
	assert.Equal(t, 2, cfg.JobsMaxNum)
	assert.Equal(t, config.Seconds(5*time.Second), cfg.JobsCheck)
	assert.Equal(t, "/data_cache", cfg.DataCachePath)
	assert.Equal(t, "INFO", cfg.LogLevel.String())
}

func TestKubernetesServiceLinksAreNoSettings(t *testing.T) {
	t.Parallel()

	_, err := config.Load([]string{dbURL, "JOBMANAGER_SERVICE_HOST=10.0.0.1", "JOBMANAGER_PORT=tcp://10.0.0.1:80",
		"JOBMANAGER_PORT_80_TCP_ADDR=10.0.0.1", "JOBMANAGER_SERVICE_PORT_HTTP=80"})
	assert.NoError(t, err)
}

func TestSettingsAreRead(t *testing.T) {
	t.Parallel()

	cfg, err := config.Load([]string{dbURL, "CONF_JOBS_CHECK=0.5", "CONF_JOBS_MAX_NUM=7",
		"CONF_LOGGER_LEVEL=WARNING", "JOBMANAGER_LEASE=1m"})
	require.NoError(t, err)

	assert.Equal(t, config.Seconds(500*time.Millisecond), cfg.JobsCheck)
	assert.Equal(t, 7, cfg.JobsMaxNum)
	assert.Equal(t, "WARN", cfg.LogLevel.String())
	assert.Equal(t, time.Minute, cfg.Lease)
}

func TestBadSettingsFailNamingTheSetting(t *testing.T) {
	t.Parallel()

	for _, c := range []struct {
		env  []string
		name string
	}{
		{[]string{}, "DATABASE_URL"},
		{[]string{dbURL, "CONF_JOBS_MAX_NUM=0"}, "CONF_JOBS_MAX_NUM"},
		{[]string{dbURL, "CONF_JOBS_MAX_NUM=many"}, "CONF_JOBS_MAX_NUM"},
		{[]string{dbURL, "CONF_JOBS_CHECK=-1"}, "CONF_JOBS_CHECK"},
		{[]string{dbURL, "CONF_JOBS_CHECK=soon"}, "CONF_JOBS_CHECK"},
		{[]string{dbURL, "CONF_PIPELINEREGISTRY_URL=pipeline-registry"}, "CONF_PIPELINEREGISTRY_URL"},
		{[]string{dbURL, "CONF_DEPLOYMENTMANAGER_URL=ftp://x"}, "CONF_DEPLOYMENTMANAGER_URL"},
		{[]string{dbURL, "CONF_LOGGER_LEVEL=loud"}, "CONF_LOGGER_LEVEL"},
		{[]string{dbURL, "JOBMANAGER_LEASE=5s", "JOBMANAGER_PEER_TIMEOUT=10s"}, "JOBMANAGER_LEASE"},
		{[]string{dbURL, "JOBMANAGER_LAUNCHER=local"}, "JOBMANAGER_PLATFORM_FILE"},
		{[]string{dbURL, "JOBMANAGER_REGISTRY=ldap"}, "JOBMANAGER_REGISTRY"},
		{[]string{dbURL, "JOBMANAGER_TYPO=1"}, "JOBMANAGER_TYPO"},
		{[]string{dbURL, "CONF_JOBS_MAXNUM=3"}, "CONF_JOBS_MAXNUM"},
		{[]string{dbURL, "CONF_JOBS_CHECK=NaN"}, "CONF_JOBS_CHECK"},
		{[]string{dbURL, "CONF_JOBS_CHECK=1e300"}, "CONF_JOBS_CHECK"},
		{[]string{dbURL, "JOBMANAGER_POLL_INTERVAL=1ns"}, "JOBMANAGER_POLL_INTERVAL"},
		{[]string{dbURL, "CONF_WORKERCALLBACK_ENV_VAR=A=B"}, "CONF_WORKERCALLBACK_ENV_VAR"},
		{[]string{dbURL, "JOBMANAGER_LISTEN_ADDR=nonsense"}, "JOBMANAGER_LISTEN_ADDR"},
		{[]string{dbURL, "JOBMANAGER_DEBUG_ADDR=nonsense"}, "JOBMANAGER_DEBUG_ADDR"},
		{[]string{dbURL, "JOBMANAGER_DRAIN_DELAY=-1s"}, "JOBMANAGER_DRAIN_DELAY"},
		{[]string{"DATABASE_URL=postgres://u:pw@127.0.0.1:badport/db"}, "DATABASE_URL"},
		{[]string{dbURL, "CONF_MACHINEREGISTRY_URL="}, "CONF_MACHINEREGISTRY_URL"},
		{[]string{dbURL, "CONF_WORKERCALLBACK_ENV_VAR="}, "CONF_WORKERCALLBACK_ENV_VAR"},
		{[]string{dbURL, "JOBMANAGER_LEASE=1000000h"}, "JOBMANAGER_LEASE"},
	} {
		_, err := config.Load(c.env)
		require.Error(t, err, c.env)
		assert.Contains(t, err.Error(), c.name, c.env)
	}
}

func TestPasswordsAreMaskedInTheLog(t *testing.T) {
	t.Parallel()

	for _, url := range []string{dbURL, "DATABASE_URL=postgres://db/jm?sslmode=disable&password=secret",
		"DATABASE_URL=host=db password=secret"} {
		cfg, err := config.Load([]string{url, "CONF_MACHINEREGISTRY_URL=http://u:secret@registry"})
		require.NoError(t, err)

		for _, a := range cfg.LogAttrs() {
			assert.NotContains(t, a.Value.String(), "secret", a.Key)
		}
	}
}

// Every key of the Kubernetes config map must be a setting the service
// reads: a misspelt one would be silently ignored.
func TestTheDeploymentsSettingsAreAllKnown(t *testing.T) {
	t.Parallel()

	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "configmap.yaml"))
	require.NoError(t, err)

	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &cm))
	require.NotEmpty(t, cm.Data)

	known := map[string]bool{}
	typ := reflect.TypeOf(config.Config{})
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("env"), ",")
		known[name] = true
	}

	env := []string{dbURL}
	for key, value := range cm.Data {
		assert.True(t, known[key], "config map sets %s, which the service does not read", key)
		env = append(env, key+"="+value)
	}

	_, err = config.Load(env)
	assert.NoError(t, err, "the config map's values are valid")
}
