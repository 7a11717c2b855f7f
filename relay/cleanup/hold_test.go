package cleanup

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
)

// The breaker's call at acceptance (issue 21 §2): the Hold hook sees the
// envelope with its local user, and either holds the message or refuses it.
func TestHoldHook(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	refuse := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "stopped"}
	for _, tc := range []struct {
		name     string
		user     string
		wantErr  error
		wantHold string
	}{
		{"other user queued", "alice", nil, ""},
		{"stopped user held", "www-data", nil, "breaker"},
		{"stopped user refused", "refused", refuse, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen queue.Envelope
			c, st := newTestCleanup(t, Options{Hostname: "web1.example.com", Hold: func(env queue.Envelope, _ time.Time) (string, []any, error) {
				seen = env
				switch env.User {
				case "www-data":
					return "breaker", []any{"user", env.User}, nil
				case "refused":
					return "", nil, refuse
				}
				return "", nil, nil
			}})
			id, err := c.Process(context.Background(), Message{Sender: "a@shop.example", Recipients: []string{"x@example.org"},
				User: tc.user, UID: 33, Protocol: "local", Data: []byte("Subject: s\r\n\r\nb\r\n")}, now)
			if seen.User != tc.user || seen.UID != 33 {
				t.Errorf("hook saw user %q uid %d", seen.User, seen.UID)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			m, err := st.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if m.HoldReason != tc.wantHold || m.User != tc.user {
				t.Errorf("queued %+v", m)
			}
			want := queue.Queued
			if tc.wantHold != "" {
				want = queue.Held
			}
			if m.Recipients[0].Status != want {
				t.Errorf("status %s, want %s", m.Recipients[0].Status, want)
			}
		})
	}
}
