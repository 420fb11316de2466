// Package platformtest fakes the platform around the job manager for
// tests and benchmarks: a data-source registry, a pipeline registry and a
// deployment manager, each a real HTTP server on loopback, whose workers
// post their results back to the job manager over HTTP like real ones.
package platformtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Plan says how a started worker behaves.
type Plan struct {
	// Outputs is the result the worker posts. Nil posts nothing.
	Outputs any
	// Early posts the result before the start request is answered.
	Early bool
	// Twice posts the result a second time.
	Twice bool
	// Delay waits this long before posting.
	Delay time.Duration
	// Stop marks the worker stopped, as if it quit without a result.
	Stop bool
	// Refuse answers the start request with 500.
	Refuse bool
	// StartDelay holds the answer to the start request back this long.
	StartDelay time.Duration
}

// StartRequest is the body the job manager posts to start a worker.
type StartRequest struct {
	ID            string                     `json:"id"`
	Name          string                     `json:"name"`
	Image         string                     `json:"image"`
	DataCachePath string                     `json:"data_cache_path"`
	Configs       map[string]json.RawMessage `json:"configs"`
	Inputs        map[string]json.RawMessage `json:"inputs"`
	Type          string                     `json:"type"`
}

// Config returns a string config of the request, "" when it has none.
func (r StartRequest) Config(name string) string {
	var s string
	_ = json.Unmarshal(r.Configs[name], &s)

	return s
}

// Input returns a string input of the request, "" when it has none.
func (r StartRequest) Input(name string) string {
	var s string
	_ = json.Unmarshal(r.Inputs[name], &s)

	return s
}

// Instance is a worker the fake deployment manager started.
type Instance struct {
	ID      string
	Request StartRequest
	Started time.Time
	// Caller is the User-Agent of the start request.
	Caller string

	mu      sync.Mutex
	stopped bool
	removed bool
}

// Removed reports whether the job manager removed the instance.
func (i *Instance) Removed() bool {
	i.mu.Lock()
	defer i.mu.Unlock()

	return i.removed
}

// Platform is the fake platform.
type Platform struct {
	// Registry serves data sources under /machines and pipelines under
	// /pipelines.
	Registry *httptest.Server
	// Deployments serves the deployment manager under /deployments.
	Deployments *httptest.Server

	// OnStart decides how each started worker behaves. It runs on the
	// request's goroutine and may be called concurrently.
	OnStart func(r StartRequest) Plan
	// Callback, when set, rewrites the URL a worker posts its result to,
	// for example to pick one of several replicas.
	Callback func(url string) string
	// Log, when set, gives the log the deployment manager serves for an
	// instance.
	Log func(inst *Instance) string
	// OnReport, when set, is told of every result post: the status of its
	// answer (0 for none), when it was sent and when it was answered.
	OnReport func(inst *Instance, status int, sent, answered time.Time)
	// Retry, when positive, makes a worker post its result again, for up
	// to this long, while the job manager cannot be reached or answers
	// 5xx. Each try asks Callback for its target anew.
	Retry time.Duration

	mu          sync.Mutex
	dataSources map[string]json.RawMessage
	pipelines   map[string]json.RawMessage
	instances   []*Instance
	byID        map[string]*Instance
	registryErr map[string]int

	nextID    atomic.Int64
	posts     sync.WaitGroup
	postFails atomic.Int64
	answers   sync.Map // status code → *atomic.Int64, of result posts
	client    *http.Client
	closed    chan struct{}
}

// New starts a fake platform whose workers behave as onStart says, and
// stops it when the test ends.
func New(t interface{ Cleanup(func()) }, onStart func(r StartRequest) Plan) *Platform {
	p := &Platform{
		OnStart:     onStart,
		dataSources: map[string]json.RawMessage{},
		pipelines:   map[string]json.RawMessage{},
		byID:        map[string]*Instance{},
		registryErr: map[string]int{},
		client:      &http.Client{Timeout: 30 * time.Second},
		closed:      make(chan struct{}),
	}

	p.Registry = httptest.NewServer(http.HandlerFunc(p.serveRegistry))
	p.Deployments = httptest.NewServer(http.HandlerFunc(p.serveDeployments))
	t.Cleanup(func() {
		close(p.closed)
		p.posts.Wait()
		p.Registry.Close()
		p.Deployments.Close()
	})

	return p
}

// AddDataSource registers a data source whose jobs run pipelineID.
func (p *Platform) AddDataSource(dsID, pipelineID string) {
	p.SetDataSource(dsID, mustJSON(map[string]string{
		"name":             "machine " + dsID,
		"pipeline_id":      pipelineID,
		"platform_id":      "device:" + dsID,
		"platform_type_id": "device-type:" + dsID,
	}))
}

// SetDataSource registers the registry's raw answer for a data source.
func (p *Platform) SetDataSource(dsID string, raw json.RawMessage) {
	p.mu.Lock()
	defer p.mu.Unlock()

	p.dataSources[dsID] = raw
}

// SetPipeline registers the registry's raw answer for a pipeline.
func (p *Platform) SetPipeline(id string, raw json.RawMessage) {
	p.mu.Lock()
	defer p.mu.Unlock()

	p.pipelines[id] = raw
}

// FailRegistry makes the registries answer status for path, such as
// "/machines/ds-1".
func (p *Platform) FailRegistry(path string, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()

	p.registryErr[path] = status
}

// Instances returns every instance started so far, in start order.
func (p *Platform) Instances() []*Instance {
	p.mu.Lock()
	defer p.mu.Unlock()

	return append([]*Instance(nil), p.instances...)
}

// PostFailures counts results the job manager did not answer with 200.
func (p *Platform) PostFailures() int64 {
	return p.postFails.Load()
}

// Settings returns the job manager's CONF_* settings that point at the
// fake platform.
func (p *Platform) Settings() map[string]string {
	return map[string]string{
		"CONF_MACHINEREGISTRY_URL":   p.Registry.URL,
		"CONF_MACHINEREGISTRY_API":   "machines",
		"CONF_PIPELINEREGISTRY_URL":  p.Registry.URL,
		"CONF_PIPELINEREGISTRY_API":  "pipelines",
		"CONF_DEPLOYMENTMANAGER_URL": p.Deployments.URL,
		"CONF_DEPLOYMENTMANAGER_API": "deployments",
	}
}

func (p *Platform) serveRegistry(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	status, failing := p.registryErr[r.URL.Path]
	var (
		raw json.RawMessage
		ok  bool
	)
	if id, found := strings.CutPrefix(r.URL.Path, "/machines/"); found {
		raw, ok = p.dataSources[id]
	} else if id, found := strings.CutPrefix(r.URL.Path, "/pipelines/"); found {
		raw, ok = p.pipelines[id]
	}
	p.mu.Unlock()

	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case failing:
		http.Error(w, "failing on purpose", status)
	case !ok:
		http.NotFound(w, r)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
	}
}

func (p *Platform) serveDeployments(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/deployments")
	if !ok {
		http.NotFound(w, r)
		return
	}

	rest = strings.Trim(rest, "/")
	id, sub, _ := strings.Cut(rest, "/")

	switch {
	case rest == "" && r.Method == http.MethodPost:
		p.start(w, r)
	case id != "" && sub == "" && r.Method == http.MethodGet:
		p.status(w, id)
	case id != "" && sub == "log" && r.Method == http.MethodGet:
		p.log(w, id)
	case id != "" && sub == "" && r.Method == http.MethodDelete:
		p.remove(w, id)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func (p *Platform) start(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad start request: "+err.Error(), http.StatusBadRequest)
		return
	}

	plan := p.OnStart(req)
	time.Sleep(plan.StartDelay)
	if plan.Refuse {
		http.Error(w, "refused on purpose", http.StatusInternalServerError)
		return
	}

	inst := &Instance{
		ID:      fmt.Sprintf("inst-%d", p.nextID.Add(1)),
		Request: req,
		Started: time.Now(),
		Caller:  r.UserAgent(),
		stopped: plan.Stop,
	}

	p.mu.Lock()
	p.instances = append(p.instances, inst)
	p.byID[inst.ID] = inst
	p.mu.Unlock()

	if plan.Outputs != nil && plan.Early {
		p.report(inst, plan.Outputs)
	}

	if plan.Outputs != nil && !plan.Early {
		p.posts.Add(1)
		go func() {
			defer p.posts.Done()
			time.Sleep(plan.Delay)
			p.report(inst, plan.Outputs)
			if plan.Twice {
				p.report(inst, plan.Outputs)
			}
		}()
	}

	_, _ = io.WriteString(w, inst.ID)
}

// report posts a worker's result to its callback URL, as a worker does.
func (p *Platform) report(inst *Instance, outputs any) {
	body := mustJSON(map[string]any{inst.ID: outputs})
	deadline := time.Now().Add(p.Retry)

	for {
		target := inst.Request.Config("JOB_CALLBACK_URL")
		if p.Callback != nil {
			target = p.Callback(target)
		}

		sent := time.Now()
		status := p.postOnce(target, body)
		if p.OnReport != nil {
			p.OnReport(inst, status, sent, time.Now())
		}

		if status == http.StatusOK {
			return
		}

		if (status != 0 && status < 500) || time.Now().After(deadline) {
			p.postFails.Add(1)
			return
		}

		select {
		case <-p.closed:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// postOnce posts a result and returns the answer's status, 0 when there
// was none.
func (p *Platform) postOnce(target string, body []byte) int {
	resp, err := p.client.Post(target, "application/json", bytes.NewReader(body))
	if err != nil {
		p.countAnswer(0)
		return 0
	}
	defer resp.Body.Close()

	_, _ = io.Copy(io.Discard, resp.Body)
	p.countAnswer(resp.StatusCode)

	return resp.StatusCode
}

func (p *Platform) countAnswer(status int) {
	n, _ := p.answers.LoadOrStore(status, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
}

// Answers counts the job manager's answers to result posts by status
// code; 0 counts posts that got no answer.
func (p *Platform) Answers() map[int]int64 {
	out := map[int]int64{}
	p.answers.Range(func(k, v any) bool {
		out[k.(int)] = v.(*atomic.Int64).Load()
		return true
	})

	return out
}

func (p *Platform) instance(id string) *Instance {
	p.mu.Lock()
	defer p.mu.Unlock()

	return p.byID[id]
}

func (p *Platform) status(w http.ResponseWriter, id string) {
	inst := p.instance(id)
	if inst == nil {
		http.NotFound(w, nil)
		return
	}

	inst.mu.Lock()
	status := "running"
	if inst.stopped || inst.removed {
		status = "stopped"
	}
	inst.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(mustJSON(map[string]string{"id": id, "status": status}))
}

func (p *Platform) log(w http.ResponseWriter, id string) {
	inst := p.instance(id)
	if inst == nil {
		http.NotFound(w, nil)
		return
	}

	if p.Log != nil {
		_, _ = io.WriteString(w, p.Log(inst))
		return
	}

	fmt.Fprintf(w, "%s (%s) ran\n", inst.ID, inst.Request.Image)
}

func (p *Platform) remove(w http.ResponseWriter, id string) {
	inst := p.instance(id)
	if inst == nil {
		http.NotFound(w, nil)
		return
	}

	inst.mu.Lock()
	inst.removed = true
	inst.mu.Unlock()

	w.WriteHeader(http.StatusOK)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}

	return b
}
