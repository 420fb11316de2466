package peer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/peer"
)

// recorder is a peer that answers every request with one status and body
// and remembers what was asked.
type recorder struct {
	mu     sync.Mutex
	asked  []string
	status int
	body   string
}

func (r *recorder) serve(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.asked = append(r.asked, req.Method+" "+req.RequestURI+" "+req.UserAgent())
		status, body := r.status, r.body
		r.mu.Unlock()

		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)

	return srv.URL
}

func client() *http.Client {
	return &http.Client{
		Timeout:   time.Second,
		Transport: peer.WithUserAgent(http.DefaultTransport, "jobmanager/test"),
	}
}

func TestIDsAreSentAsOnePathSegment(t *testing.T) {
	t.Parallel()
	r := &recorder{status: http.StatusOK,
		body: `{"name":"m","pipeline_id":"p","platform_id":"d","platform_type_id":"t"}`}
	base := r.serve(t)
	reg := peer.NewRegistries(client(), peer.Endpoint(base, "/machines/"), peer.Endpoint(base+"/", "pipelines"))

	for _, id := range []string{"..", ".", "a/b", "x?y#z"} {
		_, err := reg.DataSource(context.Background(), id)
		require.NoError(t, err, id)
	}

	assert.Equal(t, []string{
		"GET /machines/%2E%2E jobmanager/test",
		"GET /machines/%2E jobmanager/test",
		"GET /machines/a%2Fb jobmanager/test",
		"GET /machines/x%3Fy%23z jobmanager/test",
	}, r.asked)
}

func TestRegistryFailuresNameTheDataSource(t *testing.T) {
	t.Parallel()

	for _, c := range []struct {
		status int
		body   string
		words  []string
	}{
		{http.StatusNotFound, "", []string{"ds-1", "404"}},
		{http.StatusOK, "not json", []string{"ds-1", "malformed"}},
		{http.StatusOK, `{"name":"m"}`, []string{"ds-1", "pipeline_id"}},
	} {
		r := &recorder{status: c.status, body: c.body}
		reg := peer.NewRegistries(client(), r.serve(t)+"/machines", "unused")

		_, err := reg.DataSource(context.Background(), "ds-1")
		require.Error(t, err)
		for _, w := range c.words {
			assert.Contains(t, err.Error(), w)
		}
	}
}

func TestStartReadsTheInstanceIDAsTextOrJSONString(t *testing.T) {
	t.Parallel()

	for body, want := range map[string]string{"inst-1\n": "inst-1", `"inst-2"`: "inst-2"} {
		r := &recorder{status: http.StatusOK, body: body}
		d := peer.NewDeployments(client(), r.serve(t)+"/deployments")

		got, err := d.Start(context.Background(), []byte(`{}`))
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}

	for _, body := range []string{"", "a/b", "   "} {
		r := &recorder{status: http.StatusOK, body: body}
		d := peer.NewDeployments(client(), r.serve(t)+"/deployments")

		_, err := d.Start(context.Background(), []byte(`{}`))
		assert.Error(t, err, "%q", body)
	}
}

func TestAliveFollowsTheDeploymentManagersAnswer(t *testing.T) {
	t.Parallel()

	for _, c := range []struct {
		status int
		body   string
		alive  bool
	}{
		{http.StatusOK, `{"status":"running"}`, true},
		{http.StatusOK, `{"status":"stopped"}`, false},
		{http.StatusNotFound, ``, false},
		{http.StatusInternalServerError, ``, false},
	} {
		r := &recorder{status: c.status, body: c.body}
		d := peer.NewDeployments(client(), r.serve(t)+"/deployments")

		alive, err := d.Alive(context.Background(), "i")
		require.NoError(t, err)
		assert.Equal(t, c.alive, alive, "%d %s", c.status, c.body)
	}
}

func TestRemovingAGoneInstanceSucceeds(t *testing.T) {
	t.Parallel()
	r := &recorder{status: http.StatusNotFound}
	d := peer.NewDeployments(client(), r.serve(t)+"/deployments")

	require.NoError(t, d.Remove(context.Background(), "i"))
	assert.Equal(t, []string{"DELETE /deployments/i jobmanager/test"}, r.asked)
}
