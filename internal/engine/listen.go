package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
)

// jobsChannel is where the database announces that a job was added or
// ended (see migrations/00002_notify.sql).
const jobsChannel = "jobmanager_jobs"

// Listen kicks the engine whenever the database announces that a job was
// added or ended on any replica, until ctx ends. It reconnects by itself
// after a lost connection; polling covers what is missed meanwhile.
func (e *Engine) Listen(ctx context.Context, connect func(context.Context) (*pgx.Conn, error)) {
	l := &pgxlisten.Listener{
		Connect: connect,
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				e.logger.Warn("listen for job changes", slog.String("err", err.Error()))
			}
		},
		ReconnectDelay: time.Second,
	}

	l.Handle(jobsChannel, pgxlisten.HandlerFunc(
		func(context.Context, *pgconn.Notification, *pgx.Conn) error {
			e.Kick()
			return nil
		}))

	_ = l.Listen(ctx)
}
