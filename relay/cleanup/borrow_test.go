package cleanup

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"facteur/queue"
)

// keeper records what Process hands on (the store's body, the signer's
// input and output, Hold's envelope, Queued's subject), keeping the very
// slices it was given.
type keeper struct {
	body, signIn, signOut []byte
	bodyCopy, signInCopy  []byte
	subject               string
	env                   queue.Envelope
}

func (k *keeper) Enqueue(_ context.Context, env queue.Envelope, body []byte, _ time.Time) (queue.ID, error) {
	k.body, k.bodyCopy, k.env = body, bytes.Clone(body), env
	return env.ID, nil
}

func (k *keeper) Sign(msg []byte, _ time.Time) ([]byte, string, string, error) {
	k.signIn, k.signInCopy = msg, bytes.Clone(msg)
	// A signer that has no key for the domain returns its input.
	k.signOut = msg
	return msg, "", "", nil
}

// TestProcessKeepsNoReference: Process only borrows Message.Data (the
// submission spool reuses that memory for the next session). Overwriting
// Data after Process must change nothing Process handed on.
func TestProcessKeepsNoReference(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	tests := []struct{ name, data string }{
		{"clean CRLF, the fast path", "From: a@example.org\r\nSubject: hi\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n"},
		{"no final CRLF", "Subject: hi\r\n\r\nbody"},
		{"no header block", "just a body line\r\nand another\r\n"},
		{"header only", "Subject: hi\r\n"},
		{"bare LF, normalised", "Subject: hi\n\nbody\n"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &keeper{}
			var held queue.Envelope
			c := New(Options{Hostname: "relay.test",
				Hold:   func(env queue.Envelope, _ time.Time) (string, []any, error) { held = env; return "", nil, nil },
				Queued: func(_ queue.Envelope, subject string, _ time.Time) { k.subject = subject },
			}, k, k, slog.New(slog.NewTextHandler(io.Discard, nil)))
			data := []byte(tt.data)
			if _, err := c.Process(t.Context(), Message{Sender: "a@example.org", Recipients: []string{"b@example.com"},
				ClientIP: "127.0.0.1", Protocol: "ESMTP", Data: data}, now); err != nil {
				t.Fatal(err)
			}
			subject, sender, heldSender := k.subject, k.env.Sender, held.Sender
			for i := range data {
				data[i] = 'Z'
			}
			if !bytes.Equal(k.body, k.bodyCopy) {
				t.Errorf("the queued body changed with Data: %q, was %q", k.body, k.bodyCopy)
			}
			if !bytes.Equal(k.signIn, k.signInCopy) {
				t.Errorf("the signer's input changed with Data: %q, was %q", k.signIn, k.signInCopy)
			}
			if k.subject != subject || k.env.Sender != sender || held.Sender != heldSender {
				t.Errorf("strings changed with Data")
			}
		})
	}
}

// TestReceivedForm pins the Received field, word for word, in its three
// forms (built by concatenation since fmt cost an allocation per argument).
func TestReceivedForm(t *testing.T) {
	c := New(Options{Hostname: "relay.test"}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	const date = "Mon, 07 Dec 2026 05:00:00 +0000"
	tests := []struct {
		name  string
		m     Message
		rcpts []string
		want  string
	}{
		{"smtp, one recipient", Message{Helo: "app (x)", ClientIP: "192.0.2.1", Protocol: "ESMTPS"}, []string{"a@example.com"},
			"Received: from appx ([192.0.2.1])\r\n\tby relay.test (facteur) with ESMTPS id Q1\r\n\tfor <a@example.com>;\r\n\t" + date + "\r\n"},
		{"smtp, local user, no helo, two recipients", Message{ClientIP: "127.0.0.1", User: "www-data", UID: 33}, []string{"a@x", "b@x"},
			"Received: from localhost ([127.0.0.1])\r\n\tby relay.test (facteur, from userid 33) with SMTP id Q1;\r\n\t" + date + "\r\n"},
		{"local", Message{Protocol: "local", User: "root", UID: 0}, []string{"a@x"},
			"Received: by relay.test (facteur, from userid 0)\r\n\twith local id Q1\r\n\tfor <a@x>;\r\n\t" + date + "\r\n"},
	}
	for _, tt := range tests {
		if got := c.received(tt.m, "Q1", tt.rcpts, date); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}
