package daemon

// The integrity test: many SMTP clients at once through the whole daemon
// (submission, cleanup, the queue, the scheduler, delivery) to a real SMTP
// sink, every message checked byte for byte on arrival. The hot path reuses
// buffers (the submission spool, maillog's lines) and hand-writes its byte
// loops (the smuggling and header scans, delivery's dot-stuffing and
// in-place reply parsing): the bugs they can have are silent, one message's
// bytes in another, a body cut or doubled, a dot lost or added, a reply or
// a log line given to the wrong message. Each message here has its own
// sender, recipients and random body, so that any of those shows as a
// mismatch.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/relay/config"
	"facteur/relay/maillog"
	"facteur/relay/relaytest"
)

// Thresholds of the path, copied here because the packages keep them
// unexported; a message is sized on each side of each.
const (
	itSpoolStart  = 16 << 10  // submission.spoolStart: a pooled spool's first capacity
	itSpoolKeep   = 64 << 10  // submission.spoolKeep: the largest spool given back to the pool
	itSpoolMemory = 256 << 10 // submission.spoolMemory: past it DATA spills to a file
	itBigBody     = 64 << 10  // queue.bigBody: a stored body from this size gets its own bucket
	itBlock       = 64 << 10  // delivery.blockSize: the body is written in blocks of this size
)

// itMsg is one message of the test.
type itMsg struct {
	n     int
	kind  string
	mode  string   // how the client sends it: "pipelined", "bdat" or "client" (go-smtp's)
	from  string   // unique to the message
	rcpts []string // the recipients the sink accepts
	// refused is a recipient the sink refuses with 550 5.1.1 (a bounce,
	// and a DSN to from), or "".
	refused string
	// data is the message as the client sends it (before dot-stuffing):
	// the header block, a blank line, the body.
	data []byte
	// want is what the sink must get after the Received field facteur
	// prepends: the header block without Bcc, then, when the message had
	// none, the Date and Message-ID fields facteur appends (checked by
	// name only), a blank line, the body with its line endings made CRLF.
	wantHead []byte
	wantBody []byte
	appended bool // facteur appends Date and Message-ID
	// storedSize, when set, is the size the stored message must have
	// (Received included): the sizes around queue.bigBody.
	storedSize int
	// storedDot, when set, is where the stored message has a dot that
	// starts a line: around the end of delivery's first block.
	storedDot int

	qid string // from the client's 250 reply
}

// itLog is the daemon's event log, kept for the checks and waited on.
type itLog struct {
	mu      sync.Mutex // guards buf and changed
	buf     bytes.Buffer
	changed chan struct{}
}

func newITLog() *itLog { return &itLog{changed: make(chan struct{})} }

func (l *itLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *itLog) snapshot() (string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String(), l.changed
}

// waitFor returns the log once ok holds for it, or fails at the deadline.
func (l *itLog) waitFor(t *testing.T, ctx context.Context, what string, ok func(string) bool) string {
	t.Helper()
	for {
		s, ch := l.snapshot()
		if ok(s) {
			return s
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Errorf("waiting for %s: %v\nlog:\n%s", what, ctx.Err(), tail(s, 30))
			return s
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestIntegrity: 20 clients submit at once, over the three ways a client
// sends a message (DATA pipelined with its commands, BDAT chunks, go-smtp's
// client one command at a time), messages of distinct random bodies: lines
// starting with dots, lone "." and ".." lines, lines of exactly 998
// octets, a header line of 998, empty bodies, bare CR and LF (made CRLF),
// sizes on each side of the spool's pool and spill thresholds and of the
// queue's own-bucket threshold (exactly), compressible bodies of hundreds
// of KB, written in writes cut at random places. The sink refuses one
// recipient of some messages. Checked: each 250 names the queue ID the log
// gives the message; the sink gets every accepted recipient exactly once,
// in a transaction of its own message's envelope, with exactly its bytes
// after the Received field; a refused one is bounced, once, with one DSN
// to its own sender that names it; every log line of a queue ID is about
// that message; nothing is deferred; the queue is empty at the end.
func TestIntegrity(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FACTEUR_INTEGRITY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = v
	}
	t.Logf("seed %d (FACTEUR_INTEGRITY_SEED=%d to replay the bodies)", seed, seed)

	clients, perClient := 20, 30
	if raceOn {
		perClient = 12
	}

	refuse := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	sink := relaytest.NewSink(t, "127.0.0.2:0", relaytest.SinkOptions{
		Rcpt: func(addr string) error {
			if strings.HasPrefix(addr, "refuse-") {
				return refuse
			}
			return nil
		},
	})
	d := startIntegrityDaemon(t, sink)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	// A first message alone measures the Received field facteur prepends
	// (the same length for every single-recipient message here: fixed-width
	// HELO, recipient, queue ID and date), so that the messages around
	// queue.bigBody can be sized to land exactly on it.
	rng := rand.New(rand.NewPCG(seed, 1))
	warm := buildMessage(rng, 0, "sized", "pipelined", 2000) // one recipient, as the sized ones
	if err := sendBatch(d.smtp, 0, []*itMsg{warm}, rng); err != nil {
		t.Fatal(err)
	}
	if err := sink.Wait(ctx, 1); err != nil {
		t.Fatal(err)
	}
	first := sink.Messages()[0]
	recvLen := receivedLen(first.Body)
	if recvLen <= 0 {
		t.Fatalf("the first message has no Received field first:\n%q", first.Body[:min(300, len(first.Body))])
	}

	// The messages: the sized ones first (each size once), then random
	// kinds; modes and kinds spread over the clients.
	type spec struct {
		kind   string
		size   int // the whole message as DATA delivers it, header included; 0: random
		stored int // the stored size (Received included) to hit instead
		dot    int // where a line-starting dot is to be in the stored message
	}
	var specs []spec
	for _, n := range []int{itSpoolStart, itSpoolKeep, itSpoolMemory} {
		for _, d := range []int{-1, 0, 1} {
			specs = append(specs, spec{kind: "sized", size: n + d})
		}
	}
	for _, d := range []int{-1, 0, 1} {
		specs = append(specs, spec{kind: "sized", stored: itBigBody + d})
	}
	// A dot line whose dot is the last octet of delivery's first block,
	// the first of the second, and one whose CR and LF are split by the
	// end of the block.
	for _, d := range []int{-2, -1, 0} {
		specs = append(specs, spec{kind: "blockedge", dot: itBlock + d})
	}
	specs = append(specs, spec{kind: "sized", size: itBlock + 1}, spec{kind: "sized", size: 2*itBlock + 7})
	specs = append(specs, spec{kind: "zip"}, spec{kind: "zip"}, spec{kind: "empty"}, spec{kind: "edges"}, spec{kind: "998"}, spec{kind: "dots"})
	kinds := []string{"text", "text", "dots", "998", "edges", "bare", "text", "dots"}
	modes := []string{"pipelined", "bdat", "client"}

	total := clients * perClient
	msgs := make([]*itMsg, total)
	for i := range msgs {
		n := i + 1
		mode := modes[i%clients%len(modes)]
		var m *itMsg
		switch {
		case i < len(specs) && specs[i].stored > 0:
			m = buildMessage(rng, n, "sized", mode, specs[i].stored-recvLen)
			m.storedSize = specs[i].stored
		case i < len(specs) && specs[i].dot > 0:
			m = buildMessage(rng, n, "blockedge", mode, specs[i].dot-recvLen)
			m.storedDot = specs[i].dot
		case i < len(specs):
			m = buildMessage(rng, n, specs[i].kind, mode, specs[i].size)
		default:
			kind := kinds[rng.IntN(len(kinds))]
			if kind == "bare" && mode == "client" {
				// go-smtp's client would change the bare breaks itself
				// (textproto's DotWriter writes "\r\r\n" as "\r\r\r\n").
				kind = "text"
			}
			m = buildMessage(rng, n, kind, mode, 0)
		}
		msgs[i] = m
	}

	// Client g sends messages g, g+clients, ... in connections of a few
	// transactions each, all clients at once.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for g := range clients {
		var mine []*itMsg
		for i := g; i < total; i += clients {
			mine = append(mine, msgs[i])
		}
		crng := rand.New(rand.NewPCG(seed, uint64(100+g)))
		wg.Go(func() {
			for len(mine) > 0 {
				k := min(len(mine), 1+crng.IntN(4))
				if err := sendBatch(d.smtp, g, mine[:k], crng); err != nil {
					errs <- fmt.Errorf("client %d: %w", g, err)
					return
				}
				mine = mine[k:]
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	submitted := time.Since(start)

	// Every accepted recipient, and a DSN for each refused one.
	wantRcpts, wantDSNs := 1, 0 // the first message's recipient
	for _, m := range msgs {
		wantRcpts += len(m.rcpts)
		if m.refused != "" {
			wantDSNs++
		}
	}
	// Every outcome logged (the sink has a message before facteur has its
	// reply and logs it), or a deferral, which none of them should get: a
	// message mangled on the way usually shows so, or as a wait that never
	// ends; the checks below then say which.
	finals := wantRcpts + 2*wantDSNs // delivered lines, bounced lines, the DSNs' delivered lines
	d.log.waitFor(t, ctx, "every outcome logged", func(s string) bool {
		return strings.Count(s, " delivered ")+strings.Count(s, " bounced ") >= finals || strings.Contains(s, " deferred ")
	})
	delivered := time.Since(start)
	d.stop(t)

	all := append([]*itMsg{warm}, msgs...)
	checkSink(t, all, sink.Messages())
	checkLog(t, all, d.logText())

	store, err := queue.Open(filepath.Join(d.dataDir, "queue.db"), queue.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	st, err := store.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 0 {
		t.Errorf("%d messages still queued after every delivery: %+v", st.Messages, st.Recipients)
	}
	t.Logf("%d messages from %d clients (%d recipients, %d DSNs): submitted in %v, delivered in %v",
		len(all), clients, wantRcpts, wantDSNs, submitted.Round(time.Millisecond), delivered.Round(time.Millisecond))
}

// itDaemon is the daemon under test, run in this process.
type itDaemon struct {
	smtp    string
	dataDir string
	log     *itLog
	cancel  context.CancelFunc
	done    chan error
}

// startIntegrityDaemon runs the daemon relaying everything to sink, and
// returns once it has started. Its SMTP port is picked free, and picked
// again when another process took it before the daemon's bind.
func startIntegrityDaemon(t *testing.T, sink *relaytest.Sink) *itDaemon {
	t.Helper()
	for attempt := 0; ; attempt++ {
		dir := t.TempDir()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		yaml := fmt.Sprintf(`hostname: relay.test
listen: [%s]
admin: ""
data_dir: %s
mail_spool: %s
aliases_file: ""
resolver: %s
shutdown_timeout: 5s
delivery:
  relayhost: %s
  tls: none
  mta_sts: off
  dane: off
`, addr, filepath.Join(dir, "data"), filepath.Join(dir, "spool"), relaytest.RefusingAddr(t, ""), sink.Addr())
		cfg, err := config.Parse(filepath.Join(dir, "facteur.yaml"), []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		d := &itDaemon{smtp: addr, dataDir: cfg.DataDir, log: newITLog(), cancel: cancel, done: make(chan error, 1)}
		go func() { d.done <- Run(ctx, cfg, maillog.New(d.log, "text")) }()
		started := make(chan struct{})
		go func() {
			for {
				s, ch := d.log.snapshot()
				if strings.Contains(s, " started ") {
					close(started)
					return
				}
				select {
				case <-ch:
				case <-ctx.Done():
					return
				}
			}
		}()
		select {
		case <-started:
			t.Cleanup(func() { d.stop(t) })
			return d
		case err := <-d.done:
			cancel()
			if attempt < 4 && err != nil && strings.Contains(err.Error(), "address already in use") {
				continue
			}
			t.Fatalf("daemon exited at start: %v\n%s", err, d.logText())
		case <-time.After(30 * time.Second):
			cancel()
			t.Fatalf("daemon not started after 30 s:\n%s", d.logText())
		}
	}
}

func (d *itDaemon) logText() string {
	s, _ := d.log.snapshot()
	return s
}

// stop ends the daemon and waits for it; once.
func (d *itDaemon) stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("daemon still running 30 s after its stop (shutdown_timeout 5s)")
	}
}

// receivedLen is the length of the first field of msg when it is a
// Received field (with its continuation lines), else 0.
func receivedLen(msg []byte) int {
	if !bytes.HasPrefix(msg, []byte("Received: ")) {
		return 0
	}
	i := 0
	for {
		j := bytes.Index(msg[i:], []byte("\r\n"))
		if j < 0 {
			return 0
		}
		i += j + 2
		if i >= len(msg) || (msg[i] != ' ' && msg[i] != '\t') {
			return i
		}
	}
}

// Body generation. Lines are drawn from an alphabet without dots, so that
// a dot at a line's start is always one the test put there.
const itAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_,;:!?"

func plainLine(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = itAlphabet[rng.IntN(len(itAlphabet))]
	}
	if n > 0 && b[0] == ' ' {
		b[0] = 'x' // a body line starting with WSP would read as a folded header line at the top
	}
	return b
}

// dotLine is a line starting with a dot: ".", "..", "...", or a dot and text.
func dotLine(rng *rand.Rand) []byte {
	switch rng.IntN(4) {
	case 0:
		return []byte(".")
	case 1:
		return []byte("..")
	case 2:
		return []byte("...")
	}
	return append([]byte("."), plainLine(rng, rng.IntN(80))...)
}

// exactBody returns a body of exactly n octets (n >= 2) of CRLF lines from
// line, the last one padded to fit.
func exactBody(rng *rand.Rand, n int, line func() []byte) []byte {
	b := make([]byte, 0, n)
	for {
		l := line()
		if n-len(b)-len(l)-2 < 2 {
			break
		}
		b = append(append(b, l...), '\r', '\n')
	}
	return append(append(b, plainLine(rng, n-len(b)-2)...), '\r', '\n')
}

// genBody draws a body of a kind; size is the exact length wanted, 0 for
// the kind's own.
func genBody(rng *rand.Rand, kind string, size int) []byte {
	text := func() []byte {
		switch r := rng.IntN(20); {
		case r < 2:
			return dotLine(rng)
		case r < 4:
			return nil // an empty line
		default:
			return plainLine(rng, rng.IntN(120))
		}
	}
	switch kind {
	case "sized":
		// Random characters: snappy cannot shrink them by an eighth, so
		// the stored size is the message's.
		return exactBody(rng, size, text)
	case "text":
		return exactBody(rng, 50+rng.IntN(6000), text)
	case "dots":
		// Every line starts with a dot, past delivery's 64 KiB blocks.
		return exactBody(rng, 1000+rng.IntN(70000), func() []byte { return dotLine(rng) })
	case "998":
		// Lines of exactly 998 octets (RFC 5322's limit), some starting
		// with a dot (999 on the wire once stuffed).
		return exactBody(rng, 3000+rng.IntN(20000), func() []byte {
			l := plainLine(rng, 998)
			if rng.IntN(2) == 0 {
				l[0] = '.'
			}
			return l
		})
	case "zip":
		// Words from a small vocabulary: compressed, and still past
		// queue.bigBody once compressed.
		words := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"}
		n := 300<<10 + rng.IntN(300<<10)
		if raceOn {
			n = 200<<10 + rng.IntN(100<<10)
		}
		return exactBody(rng, n, func() []byte {
			var l []byte
			for len(l) < 70 {
				l = append(append(l, words[rng.IntN(len(words))]...), ' ')
				if rng.IntN(8) == 0 {
					l = append(l, strconv.Itoa(rng.IntN(1e6))...)
				}
			}
			if rng.IntN(30) == 0 {
				l[0] = '.'
			}
			return l
		})
	case "blockedge":
		// size is where the dot line starts.
		b := exactBody(rng, size, text)
		b = append(b, ".\r\n"...)
		return append(b, exactBody(rng, 3000, func() []byte { return dotLine(rng) })...)
	case "empty":
		return nil
	case "edges":
		// A lone dot first and last, runs of empty lines, a line of
		// spaces, "." and ".." in a row.
		var b []byte
		b = append(b, ".\r\n\r\n\r\n..\r\n.\r\n   \r\n"...)
		b = append(b, exactBody(rng, 100+rng.IntN(2000), text)...)
		return append(b, "\r\n\r\n..\r\n.\r\n"...)
	case "bare":
		// Bare LF and bare CR inside lines, never next to a dot: cleanup
		// makes them CRLF.
		b := exactBody(rng, 200+rng.IntN(4000), func() []byte {
			l := plainLine(rng, 2+rng.IntN(100))
			for range rng.IntN(3) {
				at := 1 + rng.IntN(len(l)-1)
				l[at] = "\n\r"[rng.IntN(2)]
				if l[at-1] == '\r' || l[at-1] == '\n' {
					l[at] = 'y' // a CR LF pair, or two breaks in a row, is not what this kind is for
				}
			}
			return l
		})
		return b
	}
	panic("unknown kind " + kind)
}

// normalized is b with every line ending made CRLF, as cleanup does.
func normalized(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/20)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case b[i] == '\r' || b[i] == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b[i])
		}
	}
	return out
}

// buildMessage makes message n of a kind; size, when positive, is the
// length of the whole message (header included).
func buildMessage(rng *rand.Rand, n int, kind, mode string, size int) *itMsg {
	if kind == "bare" && mode == "client" {
		panic("bare line breaks through go-smtp's client") // it rewrites them: see TestIntegrity
	}
	m := &itMsg{n: n, kind: kind, mode: mode, from: fmt.Sprintf("s-%04d@client.example", n)}
	fixed := kind == "sized" || kind == "blockedge" // placed to the octet once stored
	nr := 1
	if !fixed { // one recipient: Received has a fixed length then
		nr = 1 + rng.IntN(3)
		if rng.IntN(5) == 0 {
			m.refused = fmt.Sprintf("refuse-%04d@example.org", n)
		}
	}
	for k := range nr {
		m.rcpts = append(m.rcpts, fmt.Sprintf("r-%04d-%d@example.org", n, k))
	}
	var head, sentHead []byte
	field := func(f string, kept bool) {
		sentHead = append(append(sentHead, f...), '\r', '\n')
		if kept {
			head = append(append(head, f...), '\r', '\n')
		}
	}
	field("From: <"+m.from+">", true)
	field("To: <"+m.rcpts[0]+">", true)
	field(fmt.Sprintf("Subject: integrity %d %s %s", n, kind, mode), true)
	if !fixed && rng.IntN(4) == 0 {
		m.appended = true
	} else {
		field("Date: Mon, 07 Dec 2026 15:04:05 +0000", true)
		field(fmt.Sprintf("Message-ID: <itest-%04d@client.example>", n), true)
	}
	if !fixed && rng.IntN(4) == 0 {
		field(fmt.Sprintf("Bcc: <hidden-%04d@example.org>", n), false)
	}
	if kind == "998" || (!fixed && rng.IntN(6) == 0) {
		// A header line of exactly 998 octets: the longest accepted.
		f := []byte(fmt.Sprintf("X-Long-%04d: ", n))
		f = append(f, plainLine(rng, 998-len(f))...)
		field(string(f), true)
	}
	field(fmt.Sprintf("X-Integrity: %d", n), true)
	var body []byte
	if size > 0 {
		body = genBody(rng, kind, size-len(sentHead)-2)
	} else {
		body = genBody(rng, kind, 0)
	}
	m.data = append(append(sentHead, '\r', '\n'), body...)
	m.wantHead = head
	m.wantBody = normalized(body)
	if kind == "sized" && len(m.data) != size {
		panic(fmt.Sprintf("message %d: %d octets, want %d", n, len(m.data), size))
	}
	return m
}

// sendBatch sends msgs over one connection from client g, each in the way
// its mode says (the connection's first message decides for go-smtp's
// client), and records each queue ID.
func sendBatch(addr string, g int, msgs []*itMsg, rng *rand.Rand) error {
	helo := fmt.Sprintf("client-%02d.test", g)
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	if msgs[0].mode == "client" {
		c := smtp.NewClient(conn)
		if err := c.Hello(helo); err != nil {
			return err
		}
		for _, m := range msgs {
			if err := sendClient(c, m, rng); err != nil {
				return fmt.Errorf("message %d (%s, %s): %w", m.n, m.kind, m.mode, err)
			}
		}
		return c.Quit()
	}
	w := &rawConn{conn: conn, r: textproto.NewReader(bufio.NewReader(conn)), rng: rng}
	if _, err := w.expect(220); err != nil {
		return err
	}
	if err := w.write([]byte("EHLO " + helo + "\r\n")); err != nil {
		return err
	}
	if _, err := w.expect(250); err != nil {
		return err
	}
	for _, m := range msgs {
		var err error
		if m.mode == "bdat" {
			err = w.sendBDAT(m)
		} else {
			err = w.sendPipelined(m)
		}
		if err != nil {
			return fmt.Errorf("message %d (%s, %s): %w", m.n, m.kind, m.mode, err)
		}
	}
	if err := w.write([]byte("QUIT\r\n")); err != nil {
		return err
	}
	_, err = w.expect(221)
	return err
}

func sendClient(c *smtp.Client, m *itMsg, rng *rand.Rand) error {
	if err := c.Mail(m.from, nil); err != nil {
		return err
	}
	for _, r := range m.allRcpts(rng) {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	for p := m.data; len(p) > 0; {
		k := chunk(rng, len(p))
		if _, err := w.Write(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return err
	}
	return m.setQID(resp.StatusText)
}

// allRcpts is the envelope the client sends: the accepted recipients and
// the refused one, at a random place among them.
func (m *itMsg) allRcpts(rng *rand.Rand) []string {
	rs := slices.Clone(m.rcpts)
	if m.refused != "" {
		rs = slices.Insert(rs, rng.IntN(len(rs)+1), m.refused)
	}
	return rs
}

var queuedAs = regexp.MustCompile(`queued as ([0-9A-Z]+)$`)

func (m *itMsg) setQID(reply string) error {
	sub := queuedAs.FindStringSubmatch(reply)
	if sub == nil {
		return fmt.Errorf("final reply %q names no queue ID", reply)
	}
	m.qid = sub[1]
	return nil
}

// chunk is the length of the next write: often small, so that dots, CRs
// and LFs fall on both sides of the server's reads.
func chunk(rng *rand.Rand, left int) int {
	switch rng.IntN(4) {
	case 0:
		return min(left, 1+rng.IntN(3))
	case 1:
		return min(left, 1+rng.IntN(64))
	}
	return min(left, 1+rng.IntN(8192))
}

// rawConn is a client writing the protocol itself: pipelined commands,
// DATA stuffed by hand, BDAT chunks, in writes cut at random.
type rawConn struct {
	conn net.Conn
	r    *textproto.Reader
	rng  *rand.Rand
}

func (w *rawConn) write(p []byte) error {
	_, err := w.conn.Write(p)
	return err
}

func (w *rawConn) expect(code int) (string, error) {
	got, msg, err := w.r.ReadResponse(0)
	if err != nil {
		return "", err
	}
	if got != code {
		return "", fmt.Errorf("reply %d %s, want %d", got, msg, code)
	}
	return msg, nil
}

// envelope writes MAIL and the RCPTs (and DATA when data is set) in one
// write and reads their replies.
func (w *rawConn) envelope(m *itMsg, data bool) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "MAIL FROM:<%s>\r\n", m.from)
	rs := m.allRcpts(w.rng)
	for _, r := range rs {
		fmt.Fprintf(&b, "RCPT TO:<%s>\r\n", r)
	}
	if data {
		b.WriteString("DATA\r\n")
	}
	if err := w.write(b.Bytes()); err != nil {
		return err
	}
	if _, err := w.expect(250); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range rs {
		if _, err := w.expect(250); err != nil {
			return fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	if data {
		if _, err := w.expect(354); err != nil {
			return fmt.Errorf("DATA: %w", err)
		}
	}
	return nil
}

// stuffed is m's data as DATA carries it: a dot doubled at each line's
// start, the end of data marker after it.
func stuffed(data []byte) []byte {
	out := make([]byte, 0, len(data)+len(data)/50+5)
	atStart := true
	for i, c := range data {
		if atStart && c == '.' {
			out = append(out, '.')
		}
		out = append(out, c)
		atStart = c == '\n' && i > 0 && data[i-1] == '\r'
	}
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return append(out, ".\r\n"...)
}

func (w *rawConn) sendPipelined(m *itMsg) error {
	if err := w.envelope(m, true); err != nil {
		return err
	}
	for p := stuffed(m.data); len(p) > 0; {
		k := chunk(w.rng, len(p))
		if err := w.write(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	msg, err := w.expect(250)
	if err != nil {
		return err
	}
	return m.setQID(msg)
}

func (w *rawConn) sendBDAT(m *itMsg) error {
	if err := w.envelope(m, false); err != nil {
		return err
	}
	p := m.data
	for {
		k := chunk(w.rng, len(p))
		last := k == len(p)
		cmd := fmt.Sprintf("BDAT %d\r\n", k)
		if last {
			cmd = fmt.Sprintf("BDAT %d LAST\r\n", k)
		}
		if err := w.write(append([]byte(cmd), p[:k]...)); err != nil {
			return err
		}
		p = p[k:]
		msg, err := w.expect(250)
		if err != nil {
			return err
		}
		if last {
			return m.setQID(msg)
		}
	}
}

// checkSink holds what the sink got to what was sent.
func checkSink(t *testing.T, msgs []*itMsg, got []relaytest.SinkMessage) {
	t.Helper()
	byFrom := map[string]*itMsg{}
	for _, m := range msgs {
		byFrom[m.from] = m
	}
	seen := map[string]int{}   // recipient -> deliveries
	dsns := map[string][]int{} // sender -> DSN numbers
	failures := 0
	fail := func(format string, args ...any) {
		failures++
		if failures <= 10 {
			t.Errorf(format, args...)
		}
	}
	for i, sm := range got {
		if sm.From == "" {
			if len(sm.Rcpts) != 1 {
				fail("DSN %d to %v: want one recipient", i, sm.Rcpts)
				continue
			}
			m := byFrom[sm.Rcpts[0]]
			if m == nil || m.refused == "" {
				fail("DSN %d to %s, which had no refused recipient", i, sm.Rcpts[0])
				continue
			}
			dsns[m.from] = append(dsns[m.from], i)
			if !bytes.Contains(sm.Body, []byte(m.refused)) {
				fail("DSN %d to %s does not name %s:\n%s", i, m.from, m.refused, sm.Body)
			}
			for _, o := range refusedIn.FindAll(sm.Body, -1) {
				if string(o) != m.refused {
					fail("DSN %d to %s (about %s) names %s", i, m.from, m.refused, o)
				}
			}
			continue
		}
		m := byFrom[sm.From]
		if m == nil {
			fail("message %d from an unknown sender <%s>", i, sm.From)
			continue
		}
		for _, r := range sm.Rcpts {
			seen[r]++
			if !slices.Contains(m.rcpts, r) {
				fail("message %d from <%s> (message %d) went to <%s>, not one of its recipients %v", i, sm.From, m.n, r, m.rcpts)
			}
		}
		if why := m.mismatch(sm.Body); why != "" {
			fail("message %d (%s, %s, %d octets sent): %s", m.n, m.kind, m.mode, len(m.data), why)
		}
	}
	for _, m := range msgs {
		for _, r := range m.rcpts {
			if seen[r] != 1 {
				fail("recipient %s of message %d (%s, %s) got it %d times", r, m.n, m.kind, m.mode, seen[r])
			}
		}
		if m.refused != "" {
			if seen[m.refused] != 0 {
				fail("refused recipient %s got message %d", m.refused, m.n)
			}
			if len(dsns[m.from]) != 1 {
				fail("message %d: %d DSNs to its sender for %s, want 1", m.n, len(dsns[m.from]), m.refused)
			}
		}
	}
	if failures > 10 {
		t.Errorf("... and %d more", failures-10)
	}
}

var refusedIn = regexp.MustCompile(`refuse-[0-9]{4}@example\.org`)

// mismatch says how got, a message as the sink received it, differs from
// m, or "".
func (m *itMsg) mismatch(got []byte) string {
	rl := receivedLen(got)
	if rl == 0 {
		return fmt.Sprintf("no Received field first: %q", got[:min(200, len(got))])
	}
	if m.storedSize > 0 && len(got) != m.storedSize {
		return fmt.Sprintf("stored as %d octets, want %d (the test's queue.bigBody case)", len(got), m.storedSize)
	}
	if d := m.storedDot; d > 0 && (len(got) <= d || string(got[d-2:d+1]) != "\r\n.") {
		return fmt.Sprintf("no line-starting dot at stored octet %d (the test's delivery block case): %q", d, excerpt(got, d))
	}
	rest := got[rl:]
	if !bytes.HasPrefix(rest, m.wantHead) {
		i := 0
		for i < len(rest) && i < len(m.wantHead) && rest[i] == m.wantHead[i] {
			i++
		}
		return fmt.Sprintf("header differs at octet %d: got %q, want %q", i, excerpt(rest, i), excerpt(m.wantHead, i))
	}
	rest = rest[len(m.wantHead):]
	end := bytes.Index(rest, []byte("\r\n\r\n"))
	added := rest
	if end >= 0 {
		added = rest[:end+2]
	}
	if bytes.HasPrefix(rest, []byte("\r\n")) {
		added = nil
	}
	if m.appended {
		if !regexp.MustCompile(`^Date: [^\r\n]+\r\nMessage-ID: <[^\r\n]+>\r\n$`).Match(added) {
			return fmt.Sprintf("want Date and Message-ID appended to the header, got %q", added)
		}
	} else if len(added) > 0 {
		return fmt.Sprintf("fields added to the header: %q", added)
	}
	body := rest[len(added):]
	if !bytes.HasPrefix(body, []byte("\r\n")) {
		return fmt.Sprintf("no blank line after the header: %q", excerpt(body, 0))
	}
	body = body[2:]
	if !bytes.Equal(body, m.wantBody) {
		i := 0
		for i < len(body) && i < len(m.wantBody) && body[i] == m.wantBody[i] {
			i++
		}
		return fmt.Sprintf("body of %d octets, want %d; first difference at octet %d: got %q, want %q",
			len(body), len(m.wantBody), i, excerpt(body, i), excerpt(m.wantBody, i))
	}
	return ""
}

func excerpt(b []byte, i int) []byte {
	return b[max(0, i-20):min(len(b), i+40)]
}

// logLine is one line of the text event log.
type logLine struct {
	qid, event string
	kv         map[string]string
}

var logKV = regexp.MustCompile(` ([a-z_.-]+)=("(?:[^"\\]|\\.)*"|\S*)`)

func parseLog(s string) []logLine {
	var out []logLine
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		l := logLine{qid: f[1], event: f[2], kv: map[string]string{}}
		for _, m := range logKV.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			l.kv[m[1]] = v
		}
		out = append(out, l)
	}
	return out
}

// checkLog holds the event log to the messages: each one's received line
// has the queue ID its client was given and its own envelope, and every
// later line of that ID is about one of its recipients.
func checkLog(t *testing.T, msgs []*itMsg, s string) {
	t.Helper()
	byFrom := map[string]*itMsg{}
	for _, m := range msgs {
		byFrom["<"+m.from+">"] = m
	}
	byQID := map[string]*itMsg{} // a message's queue ID
	dsnTo := map[string]string{} // a DSN's queue ID -> its recipient
	lines := parseLog(s)
	failures := 0
	fail := func(format string, args ...any) {
		failures++
		if failures <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, l := range lines {
		if l.event != maillog.Received {
			continue
		}
		if l.kv["from"] == "<>" {
			dsnTo[l.qid] = l.kv["rcpt"]
			continue
		}
		m := byFrom[l.kv["from"]]
		if m == nil {
			fail("received line from an unknown sender: %+v", l)
			continue
		}
		if l.qid != m.qid {
			fail("message %d: its client was told queued as %s, the log received it as %s", m.n, m.qid, l.qid)
		}
		if byQID[l.qid] != nil {
			fail("queue ID %s received twice", l.qid)
		}
		byQID[l.qid] = m
		want := "<" + strings.Join(append(slices.Clone(m.rcpts), m.refused), ">,<") + ">"
		if m.refused == "" {
			want = "<" + strings.Join(m.rcpts, ">,<") + ">"
		}
		if got := l.kv["rcpt"]; !sameSet(got, want) {
			fail("message %d: received rcpt=%s, want %s", m.n, got, want)
		}
		if !m.appended {
			if got, want := l.kv["message-id"], fmt.Sprintf("<itest-%04d@client.example>", m.n); got != want {
				fail("message %d: received message-id=%s, want %s", m.n, got, want)
			}
		}
	}
	outcomes := map[string][]string{} // recipient -> events
	for _, l := range lines {
		switch l.event {
		case maillog.Delivered, maillog.Bounced, maillog.Deferred, maillog.Expired:
		default:
			continue
		}
		rcpt := strings.Trim(l.kv["rcpt"], "<>")
		if to, ok := dsnTo[l.qid]; ok {
			if l.kv["rcpt"] != to {
				fail("DSN %s: %s line for %s, its recipient is %s", l.qid, l.event, l.kv["rcpt"], to)
			}
			outcomes["dsn:"+rcpt] = append(outcomes["dsn:"+rcpt], l.event)
			continue
		}
		m := byQID[l.qid]
		if m == nil {
			fail("%s line for a queue ID no message has: %+v", l.event, l)
			continue
		}
		if !slices.Contains(m.rcpts, rcpt) && rcpt != m.refused {
			fail("%s line of message %d (%s) names %s, not one of its recipients", l.event, m.n, l.qid, l.kv["rcpt"])
		}
		outcomes[rcpt] = append(outcomes[rcpt], l.event)
	}
	for _, m := range msgs {
		for _, r := range m.rcpts {
			if got := outcomes[r]; !slices.Equal(got, []string{maillog.Delivered}) {
				fail("recipient %s of message %d: outcomes %v, want one delivered", r, m.n, got)
			}
		}
		if m.refused != "" {
			if got := outcomes[m.refused]; !slices.Equal(got, []string{maillog.Bounced}) {
				fail("refused recipient %s of message %d: outcomes %v, want one bounced", m.refused, m.n, got)
			}
			if got := outcomes["dsn:"+m.from]; !slices.Equal(got, []string{maillog.Delivered}) {
				fail("the DSN to %s: outcomes %v, want one delivered", m.from, got)
			}
		}
	}
	if failures > 10 {
		t.Errorf("... and %d more", failures-10)
	}
}

// sameSet reports whether two "<a>,<b>" lists hold the same addresses.
func sameSet(a, b string) bool {
	x, y := strings.Split(a, ","), strings.Split(b, ",")
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
