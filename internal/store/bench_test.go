package store_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The benchmarks time the store's transactions on a real database, one
// fresh database per benchmark. Each op is one call from one goroutine, so
// the numbers are the latency of a transaction, not the throughput of a
// busy server.

func BenchmarkCreateJob(b *testing.B) {
	d := newDriver(b)

	b.ReportAllocs()

	for b.Loop() {
		d.submit()
	}
}

// BenchmarkActiveJobs lists 100 jobs running in the split stage of the
// example pipeline, each document with the records of two stages.
func BenchmarkActiveJobs(b *testing.B) {
	const active = 100

	d := newDriver(b)
	for range active {
		d.submit()
		d.run(d.claim(), 2)
	}

	b.ReportAllocs()

	for b.Loop() {
		docs, err := d.st.ActiveJobs(d.ctx)
		require.NoError(b, err)
		require.Len(b, docs, active)
	}
}

// BenchmarkClaimPending times the claim every replica makes on each poll
// and each notice of a change, with 100 jobs pending and 2 running.
func BenchmarkClaimPending(b *testing.B) {
	const (
		pending = 100
		running = 2
	)

	setup := func(b *testing.B) *driver {
		d := newDriver(b)
		for range running + pending {
			d.submit()
		}

		ids, err := d.st.ClaimPending(d.ctx, running)
		require.NoError(b, err)
		require.Len(b, ids, running)

		return d
	}

	// One slot is free: each claim starts the oldest pending job. With the
	// timer stopped, the job is aborted and a new one queued behind the
	// others, so that every claim sees the same tables.
	b.Run("one_slot_free", func(b *testing.B) {
		d := setup(b)

		b.ReportAllocs()

		for b.Loop() {
			ids, err := d.st.ClaimPending(d.ctx, running+1)
			require.NoError(b, err)
			require.Len(b, ids, 1)

			b.StopTimer()
			_, err = d.st.Abort(d.ctx, ids[0].ID, nil)
			require.NoError(b, err)
			d.submit()
			b.StartTimer()
		}
	})

	// Every slot is taken: the claim finds no room, the common case on a
	// busy service.
	b.Run("no_slot_free", func(b *testing.B) {
		d := setup(b)

		b.ReportAllocs()

		for b.Loop() {
			ids, err := d.st.ClaimPending(d.ctx, running)
			require.NoError(b, err)
			require.Empty(b, ids)
		}
	})
}

// BenchmarkFullWorkerCycle takes one job of the example pipeline from its
// submission to its end, per op: CreateJob, ClaimPending, Resolved, then
// for each of its three workers WorkerStarted, Report and WorkerRemoved.
// That is 12 transactions; the chores the end hands back (a delete per
// output file) are left undone.
func BenchmarkFullWorkerCycle(b *testing.B) {
	d := newDriver(b)

	b.ReportAllocs()

	for b.Loop() {
		id := d.submit()
		require.Equal(b, id, d.claim())

		if ended := d.run(id, allStages); ended.Ended == "" {
			b.Fatalf("job %s did not end", id)
		}
	}
}
