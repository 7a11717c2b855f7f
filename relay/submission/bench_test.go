package submission

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"facteur/queue"
	"facteur/relay/cleanup"
)

// BenchmarkSubmission measures durable acceptance: 20 concurrent SMTP
// clients, one connection per 4 KiB message (as smtp-source and a PHP page
// do), fsync on (issue 3's benchmark). msgs/s is the figure to compare.
func BenchmarkSubmission(b *testing.B) {
	st, err := queue.Open(filepath.Join(b.TempDir(), "q.db"), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := cleanup.New(cleanup.Options{Hostname: "relay.test", MaxHops: 50}, st, nil, log)
	srv := New(Options{Hostname: "relay.test", MaxMessageSize: 10 << 20, MaxRecipients: 100,
		Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, c, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(b.Context(), ln, Listener{})
	defer ln.Close()
	body := "From: bench@example.org\r\nTo: rcpt@example.com\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4096/80)
	const clients = 20
	var n atomic.Int64
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, err := smtp.Dial(ln.Addr().String())
				if err != nil {
					b.Error(err)
					return
				}
				defer cl.Close()
				if err := cl.SendMail("bench@example.org", []string{fmt.Sprintf("r%d@example.com", w)}, strings.NewReader(body)); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "msgs/s")
}
