package scheduler

import (
	"bytes"
	"context"
	"strings"
	"time"

	"facteur/queue"
	"facteur/relay/address"
	"facteur/relay/dsn"
	"facteur/relay/maillog"
)

// dsnMaker queues the delivery status notifications of issue 4 §6.
type dsnMaker struct{ s *Scheduler }

// bounce queues one DSN to the envelope sender of msg for the recipients
// that failed. Never to the null sender (no bounce loops, no backscatter);
// a failed DSN goes to the postmaster once (Postfix's double bounce), and a
// failed double bounce is only logged.
func (d *dsnMaker) bounce(ctx context.Context, msg queue.Message, body []byte, rcpts []bouncedRcpt, now time.Time) {
	s := d.s
	to := msg.Sender
	if to == "" {
		if !msg.IsDSN || s.opts.Postmaster == "" {
			return
		}
		for _, r := range rcpts {
			if strings.EqualFold(r.rcpt, s.opts.Postmaster) {
				return // the double bounce itself failed
			}
		}
		to = s.opts.Postmaster
	}
	b := dsn.Bounce{
		Hostname:        s.opts.Hostname,
		QueueID:         string(msg.ID),
		Sender:          to,
		Arrival:         msg.Created,
		Now:             now,
		OriginalHeaders: headerBlock(body),
	}
	for _, r := range rcpts {
		status := r.reply.Enhanced
		if status == "" {
			status = "5.0.0"
			if r.expired {
				status = "4.4.7"
			}
		}
		if status[0] == '4' {
			// An expired recipient failed for good even if its last reply
			// was temporary (RFC 3464 §2.3.4: Action failed).
			status = "5" + status[1:]
		}
		b.Recipients = append(b.Recipients, dsn.Recipient{
			Address:     r.rcpt,
			Status:      status,
			Action:      "failed",
			RemoteMTA:   r.mx,
			Diagnostic:  r.reply.String(),
			LastAttempt: r.lastTime,
		})
	}
	report, err := dsn.Build(b)
	if err != nil {
		s.log.Error(maillog.DSNBuild, "qid", string(msg.ID), "err", err)
		return
	}
	id, err := s.store.Enqueue(ctx, queue.Envelope{Sender: "", Recipients: []string{to}, IsDSN: true, EightBit: !address.IsASCII(report)}, report, now)
	if err != nil {
		s.log.Error(maillog.DSNEnqueue, "qid", string(msg.ID), "err", err)
		return
	}
	s.log.Info(maillog.Received, "qid", string(id), "from", "<>", "size", len(report), "nrcpt", 1, "rcpt", "<"+to+">", "dsn", string(msg.ID))
	s.Wake()
}

// headerBlock returns the header of a CRLF message.
func headerBlock(msg []byte) []byte {
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2]
	}
	return msg
}
