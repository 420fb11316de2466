package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
)

// maxLog is the most of a worker's output kept as its log; the end is kept.
const maxLog = 1 << 20

// Launcher runs workers as local processes. Each gets, as environment
// variables, every config and input of its start request, DEP_INSTANCE
// with its instance id, and DATA_CACHE_PATH with the local data cache.
// It runs in its own process group, so that removing it stops every
// process it started.
//
// Instances live in this process's memory, so a service using the local
// launcher must run as a single replica.
type Launcher struct {
	programs  map[string]Program
	dataCache string
	baseEnv   []string

	mu        sync.Mutex
	instances map[string]*process
}

type process struct {
	cmd    *exec.Cmd
	output *tailBuffer
	done   chan struct{}
}

// NewLauncher returns a launcher that runs the programs of a platform
// file with dataCache as the workers' data cache. Workers inherit the
// environment given in baseEnv, such as PATH.
func NewLauncher(f *File, dataCache string, baseEnv []string) *Launcher {
	// Workers run in the data cache, so it must not be relative.
	if abs, err := filepath.Abs(dataCache); err == nil {
		dataCache = abs
	}

	return &Launcher{
		programs:  f.Workers,
		dataCache: dataCache,
		baseEnv:   baseEnv,
		instances: map[string]*process{},
	}
}

// startRequest is the part of a start request a local worker needs.
type startRequest struct {
	Image   string                     `json:"image"`
	Configs map[string]json.RawMessage `json:"configs"`
	Inputs  map[string]json.RawMessage `json:"inputs"`
}

// Start runs the program that plays the requested image.
func (l *Launcher) Start(_ context.Context, request json.RawMessage) (string, error) {
	var req startRequest
	if err := json.Unmarshal(request, &req); err != nil {
		return "", fmt.Errorf("read start request: %w", err)
	}

	prog, ok := l.programs[req.Image]
	if !ok {
		return "", fmt.Errorf("no local program plays image %q", req.Image)
	}

	instance := newInstanceID()
	env := append([]string{}, l.baseEnv...)
	env = append(env, sortedEnv(prog.Env)...)
	env = append(env, rawEnv(req.Configs)...)
	env = append(env, rawEnv(req.Inputs)...)
	env = append(env, "DEP_INSTANCE="+instance, "DATA_CACHE_PATH="+l.dataCache)

	out := &tailBuffer{max: maxLog}
	cmd := exec.Command(prog.Command[0], prog.Command[1:]...)
	cmd.Env = env
	cmd.Dir = l.dataCache
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", prog.Command[0], err)
	}

	p := &process{cmd: cmd, output: out, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()

	l.mu.Lock()
	l.instances[instance] = p
	l.mu.Unlock()

	return instance, nil
}

// Alive reports whether the instance's process still runs. An unknown
// instance is not alive.
func (l *Launcher) Alive(_ context.Context, instance string) (bool, error) {
	p := l.instance(instance)
	if p == nil {
		return false, nil
	}

	select {
	case <-p.done:
		return false, nil
	default:
		return true, nil
	}
}

// Log returns what the instance wrote to its standard output and error.
func (l *Launcher) Log(_ context.Context, instance string) (string, error) {
	p := l.instance(instance)
	if p == nil {
		return "", fmt.Errorf("unknown instance %s", instance)
	}

	return p.output.String(), nil
}

// Remove kills the instance's process group and forgets it. An unknown
// instance counts as removed.
func (l *Launcher) Remove(_ context.Context, instance string) error {
	l.mu.Lock()
	p := l.instances[instance]
	delete(l.instances, instance)
	l.mu.Unlock()

	if p == nil {
		return nil
	}

	select {
	case <-p.done:
		return nil
	default:
	}

	err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill instance %s: %w", instance, err)
	}

	<-p.done

	return nil
}

// Close kills every instance still running.
func (l *Launcher) Close() {
	l.mu.Lock()
	ids := make([]string, 0, len(l.instances))
	for id := range l.instances {
		ids = append(ids, id)
	}
	l.mu.Unlock()

	for _, id := range ids {
		_ = l.Remove(context.Background(), id)
	}
}

func (l *Launcher) instance(id string) *process {
	l.mu.Lock()
	defer l.mu.Unlock()

	return l.instances[id]
}

// rawEnv turns configs or inputs into environment variables: strings as
// they are, other values as their JSON text.
func rawEnv(values map[string]json.RawMessage) []string {
	env := make([]string, 0, len(values))
	for k, v := range values {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(v)
		}

		env = append(env, k+"="+s)
	}

	sort.Strings(env)

	return env
}

func sortedEnv(values map[string]string) []string {
	env := make([]string, 0, len(values))
	for k, v := range values {
		env = append(env, k+"="+v)
	}

	sort.Strings(env)

	return env
}

func newInstanceID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)

	return "local-" + hex.EncodeToString(b)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}

	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}
