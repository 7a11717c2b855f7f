package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"facteur/queue"
	"facteur/queue/maildrop"
	"facteur/relay/config"
)

// WriteListing streams the text listing of store into w, the one showq
// serves, a page of the queue at a time. waiting is how many messages were
// listed before it from the maildrop: with some, an empty queue does not
// print "Mail queue is empty", which would be a lie.
func WriteListing(ctx context.Context, store *queue.Store, decorate func([]queue.Message), w io.Writer, waiting int) error {
	out := &QueueText{W: w}
	err := store.Each(ctx, queue.Filter{}, func(m queue.Message) error {
		if decorate != nil {
			one := []queue.Message{m}
			decorate(one)
			m = one[0]
		}
		out.Add(m)
		return nil
	})
	if err != nil {
		return err
	}
	if out.n == 0 && waiting > 0 {
		return nil
	}
	out.End()
	return nil
}

// WriteMaildrop lists, with the daemon down, what the shim left in the
// maildrop dir: that mail is not in the queue yet, but it is not lost
// either. It prints each file's envelope (time, size, sender, user,
// recipients), never its body, and returns how many files it found. A
// missing maildrop is no message.
func WriteMaildrop(w io.Writer, dir string, list bool) (int, error) {
	paths, err := maildrop.List(dir)
	if err != nil {
		return 0, err
	}
	if len(paths) == 0 {
		return 0, nil
	}
	fmt.Fprintf(w, "%d message%s waiting in the maildrop %s: the daemon is not running; they will be queued when it starts\n", len(paths), Plural(len(paths)), dir)
	if !list {
		return len(paths), nil
	}
	for _, p := range paths {
		env, body, err := maildrop.Read(p)
		if err != nil {
			fmt.Fprintf(w, "  %s: %v\n", filepath.Base(p), err)
			continue
		}
		sender := env.Sender
		if sender == "" {
			sender = "MAILER-DAEMON"
		}
		fmt.Fprintf(w, "  %-34s %9d %s %s user=%s\n", filepath.Base(p), len(body), env.Time.Local().Format(TextTime), sender, env.User)
		for _, r := range env.Recipients {
			fmt.Fprintf(w, "  %-34s %s\n", "", r)
		}
	}
	fmt.Fprintln(w)
	return len(paths), nil
}

// DBPath is the queue database of cfg, as serve opens it.
func DBPath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "queue.db") }

// OpenStore opens the queue database while the daemon is down. create
// false means a missing database is reported as absent (nil store, no
// error) rather than created: read-only commands must not leave an empty
// database, owned by whoever ran them, in data_dir.
func OpenStore(cfg *config.Config, create bool) (*queue.Store, error) {
	p := DBPath(cfg)
	created := false
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, nil
		}
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
		created = true
	}
	s, err := queue.Open(p, queue.Options{})
	if err != nil {
		return nil, fmt.Errorf("admin socket %s unreachable, and the database: %w", cfg.AdminSocketPath(), err)
	}
	if created {
		giveToDataDirOwner(cfg.DataDir, p)
	}
	return s, nil
}

// giveToDataDirOwner hands a database that root just created to the owner
// of data_dir, so that a daemon running as its own user can open it.
func giveToDataDirOwner(dir, file string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		if err := os.Chown(file, int(st.Uid), int(st.Gid)); err != nil {
			fmt.Fprintf(os.Stderr, "facteur: %v\n", err)
		}
	}
}

// NoDatabaseError: there is no database and no daemon. This config's daemon
// never ran; saying "Mail queue is empty" could hide the queue of the daemon
// that does run (another config, another data_dir).
func NoDatabaseError(cfg *config.Config) error {
	where := "the built-in defaults (no config file)"
	if cfg.File != "" {
		where = cfg.File
	}
	return fmt.Errorf("no queue database at %s and the daemon is not running (config: %s); check data_dir, or pass -config", DBPath(cfg), where)
}
