package cleanup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/policy"
	"facteur/queue"
	"facteur/relay/address"
	"facteur/relay/config"
	"facteur/relay/maillog"
)

// Options are the config values cleanup applies.
type Options struct {
	Hostname    string
	LocalDomain string            // given to bare local parts; default Hostname
	Aliases     map[string]string // bare local part (lower-case) -> comma-separated addresses
	// LocalUser reports whether a name is an account of this host, whose
	// mail with no alias goes to its local mailbox (relay/local); nil: none.
	LocalUser func(name string) bool
	Senders   map[string]string // bare local sender -> address (sender_canonical)
	MaxHops   int               // Received headers at which a message is a loop
	Notify    func()            // called after each message is queued (wakes the scheduler); may be nil
	// Queued is called after each message is queued, with its Subject
	// field (facteur top); may be nil.
	Queued func(env queue.Envelope, subject string, at time.Time)
	// Hold is asked, just before the commit, whether the message is to be
	// queued held, why, and what to log about it (issue 21: its sender's
	// breaker is tripped); an error refuses the message instead (an
	// *smtp.SMTPError for the client). nil: every message is queued.
	Hold func(env queue.Envelope, now time.Time) (reason string, attrs []any, err error)
}

// Store is the part of queue.Store cleanup needs.
type Store interface {
	Enqueue(ctx context.Context, env queue.Envelope, body []byte, now time.Time) (queue.ID, error)
}

// Signer signs a message once, at acceptance (issue 6). It returns the
// signed message and a note for the log ("" when signed).
type Signer interface {
	Sign(msg []byte, now time.Time) (signed []byte, domain, note string, err error)
}

// Message is one submission, from an SMTP session or the maildrop.
type Message struct {
	Sender     string // "" for the null sender
	Recipients []string
	ClientIP   string
	Helo       string
	AuthUser   string
	User       string // local submitter ("" unknown), see queue.Envelope
	UID        int
	Protocol   string // "ESMTP", "SMTP", "ESMTPA", "ESMTPS", "local"
	SMTPUTF8   bool
	// Data is the message as received. Process only borrows it: it keeps
	// no reference to it, or to any part of it, once it returns (what it
	// queues, signs and logs is copied), so the caller may reuse the
	// memory; the submission spool does (TestProcessKeepsNoReference).
	Data []byte
}

// Cleanup turns a submission into a queued message.
type Cleanup struct {
	opts   Options
	store  Store
	signer Signer // nil: no DKIM keys
	log    *slog.Logger
}

// New returns a Cleanup; signer may be nil.
func New(opts Options, store Store, signer Signer, log *slog.Logger) *Cleanup {
	if opts.LocalDomain == "" {
		opts.LocalDomain = opts.Hostname
	}
	if opts.MaxHops <= 0 {
		opts.MaxHops = config.Default().MaxHops
	}
	return &Cleanup{opts: opts, store: store, signer: signer, log: log}
}

// Replies declared once, with their enhanced codes.
var (
	ErrLoop = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6},
		Message: "Too many Received headers: mail loop detected"}
	errSmugglingReply = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Bare CR or LF next to a lone dot refused (SMTP smuggling)"}
	errNULReply = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "NUL byte in message refused"}
	errStoreFull = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
		Message: "Insufficient system storage, try again later"}
	errStore = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary failure storing the message, try again later"}
)

// ReplyLine is one of our refusals as a client sees it, "451 4.7.1 text",
// for the log's resp= and a quarantined file's reason: the one-line form of
// policy.Reply.
func ReplyLine(se *smtp.SMTPError) string {
	return policy.Reply{Code: se.Code, Enhanced: policy.FormatEnhanced(se.EnhancedCode), Text: se.Message}.String()
}

// isLocal reports whether domain is one of ours: bare, local_domain or the
// host name. Aliases and sender rewriting apply only there.
func (c *Cleanup) isLocal(domain string) bool {
	return domain == "" || strings.EqualFold(domain, c.opts.LocalDomain) || strings.EqualFold(domain, c.opts.Hostname)
}

// Qualify gives a bare local part the local domain.
func (c *Cleanup) Qualify(addr string) string {
	if addr == "" || strings.Contains(addr, "@") {
		return addr
	}
	return addr + "@" + c.opts.LocalDomain
}

// RewriteSender applies `senders` (Postfix's sender_canonical) to a local
// envelope sender, then qualifies it: PHP mail() without -f sends as
// www-data, which would fail SPF/DMARC as www-data@host.
func (c *Cleanup) RewriteSender(addr string) string {
	if addr == "" {
		return ""
	}
	local, domain := address.Split(addr)
	if c.isLocal(domain) {
		if to, ok := c.opts.Senders[local]; ok {
			return to
		}
	}
	return c.Qualify(addr)
}

// ExpandRecipient applies `aliases` (recursively, as newaliases would) and
// qualifies the result. A bare name, or one at the host name, with no
// alias that is an account of this host becomes NAME@hostname, which the
// scheduler delivers to the local mailbox: cron's mail to root is read with
// `mail` rather than sent to a DNS name (Postfix's local delivery).
func (c *Cleanup) ExpandRecipient(addr string) []string {
	var out []string
	seen := map[string]bool{}
	var expand func(a string, depth int)
	expand = func(a string, depth int) {
		local, domain := address.Split(a)
		key := strings.ToLower(local)
		if to, ok := c.opts.Aliases[key]; ok && c.isLocal(domain) && depth < 10 && !seen[key] {
			seen[key] = true
			for _, t := range strings.Split(to, ",") {
				if t = strings.TrimSpace(t); t != "" {
					expand(t, depth+1)
				}
			}
			return
		}
		var q string
		if c.opts.LocalUser != nil && (domain == "" || strings.EqualFold(domain, c.opts.Hostname)) && c.opts.LocalUser(local) {
			q = local + "@" + strings.ToLower(c.opts.Hostname)
		} else {
			q = canonical(c.Qualify(a))
		}
		for _, o := range out {
			if o == q {
				return
			}
		}
		out = append(out, q)
	}
	expand(addr, 0)
	return out
}

// Process normalises, checks, completes and signs m, then stores it. The
// returned error is an *smtp.SMTPError ready for the client: 5xx for what
// the client must not retry, 4xx when the store failed.
func (c *Cleanup) Process(ctx context.Context, m Message, now time.Time) (queue.ID, error) {
	data, err := Normalize(m.Data)
	switch {
	case errors.Is(err, ErrSmuggling):
		return "", errSmugglingReply
	case errors.Is(err, ErrNUL):
		return "", errNULReply
	case err != nil:
		return "", err
	}
	h := parseHeader(data)
	if h.count("Received") >= c.opts.MaxHops {
		return "", ErrLoop
	}
	// The queue ID is drawn here so that Received and Message-ID carry it
	// (Enqueue keeps it unless, against all odds, it is taken).
	id := queue.NewID(now)
	sender := c.RewriteSender(m.Sender)
	var rcpts []string
	for _, r := range m.Recipients {
		for _, x := range c.ExpandRecipient(r) {
			if !contains(rcpts, x) {
				rcpts = append(rcpts, x)
			}
		}
	}
	// Bcc must never reach a recipient (Postfix's cleanup removes it too).
	h.remove("Bcc")
	appendFields := make([]string, 0, 3) // From, Date, Message-ID at most
	if h.count("From") == 0 && sender != "" {
		appendFields = append(appendFields, "From: <"+sender+">\r\n")
	}
	date := now.Format(time.RFC1123Z)
	if h.count("Date") == 0 {
		appendFields = append(appendFields, "Date: "+date+"\r\n")
	}
	messageID := ""
	if h.count("Message-ID") == 0 {
		messageID = "<" + string(id) + "." + randomHex(6) + "@" + c.opts.Hostname + ">"
		appendFields = append(appendFields, "Message-ID: "+messageID+"\r\n")
	}
	received := c.received(m, id, rcpts, date)
	msg := h.bytes([]string{received}, appendFields)

	env := queue.Envelope{
		ID:         id,
		Sender:     sender,
		Recipients: rcpts,
		ClientIP:   m.ClientIP,
		Helo:       m.Helo,
		AuthUser:   m.AuthUser,
		User:       m.User,
		UID:        m.UID,
		SMTPUTF8:   m.SMTPUTF8 || needsUTF8(sender, rcpts),
		EightBit:   !address.IsASCII(msg),
	}
	dkimNote := ""
	if c.signer != nil {
		signed, _, note, err := c.signer.Sign(msg, now)
		if err != nil {
			// A signing failure must not lose the message: send it unsigned
			// and say so (the key was checked at start, so this is rare).
			dkimNote = "signing failed: " + err.Error()
		} else {
			msg = signed
			dkimNote = note
		}
	}
	var holdAttrs []any
	if c.opts.Hold != nil {
		reason, attrs, err := c.opts.Hold(env, now)
		if err != nil {
			resp := err.Error()
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				resp = ReplyLine(se)
			}
			c.log.Warn(maillog.Refused, append([]any{"from", "<" + sender + ">", "client", m.ClientIP, "resp", resp}, attrs...)...)
			return "", err
		}
		env.Hold, holdAttrs = reason, attrs
	}
	qid, err := c.store.Enqueue(ctx, env, msg, now)
	if err != nil {
		if errors.Is(err, queue.ErrFull) {
			return "", errStoreFull
		}
		c.log.Error(maillog.EnqueueFailed, "err", err)
		return "", errStore
	}
	// Room for every attribute below: one allocation, not a regrowth.
	attrs := make([]any, 0, 26)
	attrs = append(attrs, "qid", string(qid), "from", "<"+sender+">", "size", len(msg), "nrcpt", len(rcpts),
		"client", m.ClientIP, "proto", m.Protocol)
	switch {
	case m.User != "":
		attrs = append(attrs, "uid", m.UID, "user", m.User)
		if m.AuthUser != "" {
			attrs = append(attrs, "sasl_user", m.AuthUser)
		}
	case m.AuthUser != "":
		attrs = append(attrs, "user", m.AuthUser)
	}
	if mid := h.value("Message-ID"); mid != "" {
		attrs = append(attrs, "message-id", mid)
	} else {
		attrs = append(attrs, "message-id", messageID)
	}
	if script := h.value("X-PHP-Originating-Script"); script != "" {
		// PHP's mail.add_x_header names the script that called mail():
		// where a hacked site's mail comes from (issue 11 §1).
		attrs = append(attrs, "script", script)
	}
	attrs = append(attrs, "rcpt", "<"+strings.Join(rcpts, ">,<")+">")
	if dkimNote != "" {
		attrs = append(attrs, "dkim", dkimNote)
	}
	c.log.Info(maillog.Received, attrs...)
	if env.Hold != "" {
		c.log.Info(maillog.Held, append([]any{"qid", string(qid), "reason", env.Hold}, holdAttrs...)...)
	}
	if c.opts.Queued != nil {
		env.ID = qid
		c.opts.Queued(env, h.value("Subject"), now)
	}
	if c.opts.Notify != nil {
		c.opts.Notify()
	}
	return qid, nil
}

// received is the Received field, date already formatted (RFC 1123Z). It
// is built by concatenation, one allocation: fmt boxed every argument.
func (c *Cleanup) received(m Message, id queue.ID, rcpts []string, date string) string {
	helo := m.Helo
	if helo == "" {
		helo = "localhost"
	}
	// Postfix's form for a local submission: "by host (Postfix, from
	// userid 33)"; the uid is the kernel's word, never the client's.
	by := c.opts.Hostname + " (facteur)"
	if m.User != "" {
		by = c.opts.Hostname + " (facteur, from userid " + strconv.Itoa(m.UID) + ")"
	}
	proto := m.Protocol
	if proto == "" {
		proto = "SMTP"
	}
	forPart := ""
	if len(rcpts) == 1 {
		forPart = "\r\n\tfor <" + rcpts[0] + ">"
	}
	if proto == "local" {
		return "Received: by " + by + "\r\n\twith local id " + string(id) + forPart + ";\r\n\t" + date + "\r\n"
	}
	return "Received: from " + sanitize(helo) + " ([" + m.ClientIP + "])\r\n\tby " + by + " with " + proto +
		" id " + string(id) + forPart + ";\r\n\t" + date + "\r\n"
}

// sanitize keeps a client-supplied HELO from breaking the header.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == '(' || r == ')' || r == '[' || r == ']' {
			return -1
		}
		return r
	}, s)
	if len(s) > 255 {
		s = s[:255]
	}
	return s
}

// canonical lower-cases the domain of addr (domains are case-insensitive;
// local parts are the remote's business), so that bob@Example.com and
// bob@example.com are one recipient and get the message once.
func canonical(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	return addr[:at+1] + strings.ToLower(addr[at+1:])
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func needsUTF8(sender string, rcpts []string) bool {
	if !address.IsASCII(sender) {
		return true
	}
	for _, r := range rcpts {
		if !address.IsASCII(r) {
			return true
		}
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
