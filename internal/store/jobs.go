package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/industrial-data/jobmanager/internal/job"
	"github.com/industrial-data/jobmanager/internal/store/internal/sqldb"
)

// CreateJob adds a pending job. It returns job.ErrConflict while a job with
// the same id is active; an id found only in history runs again.
func (s *Store) CreateJob(ctx context.Context, id string, doc job.Job) error {
	raw, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}

	n, err := s.q.InsertJob(ctx, sqldb.InsertJobParams{ID: id, Doc: raw, Created: doc.Created.Time})
	if err != nil {
		return fmt.Errorf("insert job: %w", err)
	}

	if n == 0 {
		return job.ErrConflict
	}

	return nil
}

// ActiveJobs returns every pending or running job, oldest first.
func (s *Store) ActiveJobs(ctx context.Context) ([]job.Document, error) {
	rows, err := s.q.ListActiveJobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}

	docs := make([]job.Document, len(rows))
	for i, r := range rows {
		docs[i] = job.Document{ID: r.ID, JSON: r.Doc}
	}

	return docs, nil
}

// ActiveJob returns the document of a pending or running job.
func (s *Store) ActiveJob(ctx context.Context, id string) (json.RawMessage, error) {
	doc, err := s.q.GetActiveJob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get job: %w", notFound(err))
	}

	return doc, nil
}

// History returns the latest run of every ended job, oldest first.
func (s *Store) History(ctx context.Context) ([]job.Document, error) {
	rows, err := s.q.ListHistory(ctx)
	if err != nil {
		return nil, fmt.Errorf("list history: %w", err)
	}

	docs := make([]job.Document, len(rows))
	for i, r := range rows {
		docs[i] = job.Document{ID: r.ID, JSON: r.Doc}
	}

	return docs, nil
}

// HistoryJob returns the latest run of an ended job.
func (s *Store) HistoryJob(ctx context.Context, id string) (json.RawMessage, error) {
	doc, err := s.q.GetHistoryJob(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get history: %w", notFound(err))
	}

	return doc, nil
}

// CountActiveJobs counts the pending and running jobs by status.
func (s *Store) CountActiveJobs(ctx context.Context) (map[string]int, error) {
	rows, err := s.q.CountActiveJobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}

	counts := make(map[string]int, len(rows))
	for _, r := range rows {
		counts[r.Status] = int(r.Jobs)
	}

	return counts, nil
}
