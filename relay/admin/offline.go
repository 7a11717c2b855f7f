package admin

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"facteur/queue"
	"facteur/queue/maildrop"
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
	fmt.Fprintf(w, "%d message%s waiting in the maildrop %s: the daemon is not running; they will be queued when it starts\n", len(paths), plural(len(paths)), dir)
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
