// Package pgserver starts a private PostgreSQL server from the machine's
// own binaries (initdb and pg_ctl), for tests and for `make run` on a
// machine with no server of its own.
package pgserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Server is a PostgreSQL server whose files live in one directory.
type Server struct {
	dir  string
	port int
}

// Start starts the server kept in dir, creating it first if dir holds
// none, and returns it once it accepts connections. A server already
// running there is reused. It listens on 127.0.0.1 only, with trust
// authentication for the postgres user.
func Start(dir string) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}

	// The server's user must be able to reach its directory.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}

	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}

	s := &Server{dir: dir}
	if s.port, err = s.readPort(); err != nil {
		return nil, err
	}

	if s.running() {
		return s, nil
	}

	if err := s.initialise(); err != nil {
		return nil, err
	}

	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", s.port, dir)
	if err := s.run("pg_ctl", "-D", s.data(), "-o", opts, "-l", filepath.Join(dir, "server.log"),
		"-w", "start"); err != nil {
		return nil, err
	}

	return s, nil
}

// URL returns the connection URL of a database on the server.
func (s *Server) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, database)
}

// Stop stops the server at once.
func (s *Server) Stop() error {
	return s.run("pg_ctl", "-D", s.data(), "-m", "immediate", "stop")
}

// Remove stops the server and deletes its files.
func (s *Server) Remove() error {
	stopErr := s.Stop()

	return errors.Join(stopErr, os.RemoveAll(s.dir))
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// readPort returns the port the server in dir uses, picking a free one
// for a new server.
func (s *Server) readPort() (int, error) {
	file := filepath.Join(s.dir, "port")
	if b, err := os.ReadFile(file); err == nil {
		return strconv.Atoi(strings.TrimSpace(string(b)))
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}

	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	return port, os.WriteFile(file, []byte(strconv.Itoa(port)), 0o600)
}

func (s *Server) running() bool {
	return s.run("pg_ctl", "-D", s.data(), "status") == nil
}

func (s *Server) initialise() error {
	if _, err := os.Stat(filepath.Join(s.data(), "PG_VERSION")); err == nil {
		return nil
	}

	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root; it runs as postgres, which
		// must own its files.
		if out, err := exec.Command("chown", "-R", "postgres", s.dir).CombinedOutput(); err != nil {
			return fmt.Errorf("chown %s: %w: %s", s.dir, err, out)
		}
	}

	return s.run("initdb", "-D", s.data(), "-U", "postgres", "-A", "trust", "--no-sync")
}

// run runs one of PostgreSQL's programs, as the postgres user when this
// process is root.
func (s *Server) run(program string, args ...string) error {
	path, err := Binary(program)
	if err != nil {
		return err
	}

	cmd := exec.Command(path, args...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}

	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", program, err, strings.TrimSpace(string(out)))
	}

	return nil
}

// Binary finds one of PostgreSQL's programs on PATH or in Debian's
// versioned directories.
func Binary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}

	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}

	return "", fmt.Errorf("PostgreSQL's %s is not installed: install the server "+
		"(on Debian or Ubuntu: apt-get install postgresql) or set DATABASE_URL", name)
}
