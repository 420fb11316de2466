package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/platformtest"
)

func TestRunningJobsNeverExceedMaxJobs(t *testing.T) {
	t.Parallel()
	const (
		jobs    = 10
		maxJobs = 2
	)

	var (
		ref     platformRef
		workers peak
	)
	s := setup(t, func(platformtest.StartRequest) platformtest.Plan {
		// This instance is not registered yet: count it on top.
		workers.see(ref.alive(image("hold")) + 1)

		return platformtest.Plan{Outputs: []map[string]any{{"held": "ok"}}, Delay: 30 * time.Millisecond}
	}, options{maxJobs: maxJobs})
	ref.p.Store(s.platform)
	s.platform.AddDataSource("ds", "p")
	s.platform.SetPipeline("p", holdPipeline())

	var (
		running peak
		wg      sync.WaitGroup
		done    = make(chan struct{})
		failure = make(chan error, 1)
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var n int
			err := s.pool.QueryRow(context.Background(),
				`SELECT count(*) FROM jobs WHERE status = 'running'`).Scan(&n)
			if err != nil {
				failure <- err
				return
			}

			running.see(n)

			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	ids := make([]string, jobs)
	for i := range ids {
		ids[i] = s.submit("ds", fmt.Sprintf("h-%d", i), "upload.xlsx")
	}

	for _, id := range ids {
		doc := s.ended(id)
		assert.Equal(t, job.StatusFinished, doc.Status, doc.Reason)
	}

	close(done)
	wg.Wait()
	select {
	case err := <-failure:
		require.NoError(t, err)
	default:
	}

	assert.Len(t, s.platform.Instances(), jobs)
	assert.LessOrEqual(t, running.get(), maxJobs, "jobs running at once")
	assert.LessOrEqual(t, workers.get(), maxJobs, "workers alive at once")
	assert.Equal(t, maxJobs, running.get(), "the limit is reached, so the sampling saw it")
}
