package relaytest

// The DNS half of relaytest: an in-process authoritative server built on
// github.com/miekg/dns, answering from a zone map, on UDP and TCP at the same
// 127.0.0.1 port, so that the relay's `resolver` setting can point at it.

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNSDefaultTTL is the TTL of a Zone's records when Zone.TTL is 0.
const DNSDefaultTTL = 300

// MX is one mail exchanger of a Zone.
type MX struct {
	Host string // a host name; a trailing dot is optional
	Pref uint16
}

// Zone is what the DNS server knows about one owner name. The zero Zone is a
// name that exists with no records (every query gets NOERROR with no answer).
type Zone struct {
	MX    []MX
	A     []string // IPv4 addresses, dotted quad
	AAAA  []string // IPv6 addresses
	TXT   []string // one TXT record per string; longer than 255 bytes is split into character-strings
	PTR   []string // host names, for a reverse name such as dns.ReverseAddr("127.0.0.2")
	CNAME string   // an alias: the server follows it through the zone map, as a recursive resolver would
	TLSA  []TLSA   // DANE records, for an owner such as "_25._tcp.mx.example.org"

	// Secure sets the AD bit on answers for this name (and on its
	// NXDOMAIN or NODATA, an authenticated denial), as a validating
	// resolver does for a DNSSEC-signed zone. Through a CNAME every name of
	// the chain must be Secure.
	Secure bool

	// TTL of every record and the SOA minimum of negative answers; 0 means DNSDefaultTTL.
	TTL uint32

	NullMX   bool // answer MX queries with the RFC 7505 null MX "0 ."
	ServFail bool // answer every query with SERVFAIL
	Refused  bool // answer every query with REFUSED
	Timeout  bool // never answer
	NXDomain bool // answer NXDOMAIN although the name is in the map

	// Block, when not nil, holds every answer for this name until it is
	// closed (or the server shuts down): a test can keep a lookup in flight
	// for as long as it needs, without sleeping.
	Block <-chan struct{}
}

// TLSA is one DANE record (RFC 6698): usage, selector, matching type and
// the certificate association data in hex. TLSAFor computes one.
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          string
}

// DNSQuery is one query the server received.
type DNSQuery struct {
	Type string // "MX", "A", ...
	Name string // as asked, fully qualified
	Net  string // "udp" or "tcp"
}

// String is the form of Queries: "MX example.com.".
func (q DNSQuery) String() string { return q.Type + " " + q.Name }

// DNSServer is a loopback DNS server answering from a zone map. It is safe for
// concurrent use; zones can change while it runs.
type DNSServer struct {
	t    testing.TB
	addr string
	done chan struct{} // closed at cleanup: releases blocked answers

	mu    sync.Mutex // mu guards zones and log
	zones map[string]Zone
	log   []DNSQuery
}

// NewDNS starts a DNS server on 127.0.0.1, UDP and TCP on the same port,
// answering from zones (keys are owner names, any case, trailing dot
// optional). Names not in the map get NXDOMAIN. The sockets are bound before
// NewDNS returns, so queries can be sent at once; the server stops in
// t.Cleanup.
func NewDNS(t testing.TB, zones map[string]Zone) *DNSServer {
	t.Helper()
	pc, ln, err := listenDNS()
	if err != nil {
		t.Fatalf("relaytest: dns listen: %v", err)
	}
	s := &DNSServer{
		t:     t,
		addr:  pc.LocalAddr().String(),
		done:  make(chan struct{}),
		zones: make(map[string]Zone),
	}
	for name, z := range zones {
		if err := s.set(name, z); err != nil {
			pc.Close()
			ln.Close()
			t.Fatalf("relaytest: %v", err)
		}
	}

	started := make(chan struct{}, 2)
	servErr := make(chan error, 2)
	notify := func() { started <- struct{}{} }
	udp := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify}
	tcp := &dns.Server{Listener: ln, Handler: s, NotifyStartedFunc: notify}
	var wg sync.WaitGroup
	for _, srv := range []*dns.Server{udp, tcp} {
		wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				servErr <- err
			}
		})
	}
	// Wait for both serve loops to have started: dns.Server.Shutdown refuses
	// a server that has not, and the cleanup below must stop both.
	for range 2 {
		select {
		case <-started:
		case err := <-servErr:
			pc.Close()
			ln.Close()
			t.Fatalf("relaytest: dns serve: %v", err)
		}
	}
	t.Cleanup(func() {
		close(s.done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := udp.ShutdownContext(ctx); err != nil {
			t.Errorf("relaytest: dns udp shutdown: %v", err)
		}
		if err := tcp.ShutdownContext(ctx); err != nil {
			t.Errorf("relaytest: dns tcp shutdown: %v", err)
		}
		wg.Wait()
	})
	return s
}

// listenDNS binds UDP on an ephemeral loopback port, then TCP on the same
// port. Another process may hold that TCP port, so it tries a few ports.
func listenDNS() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no port free for both UDP and TCP: %w", lastErr)
}

// DNSReverseName is the PTR owner name of ip ("127.0.0.2" →
// "2.0.0.127.in-addr.arpa."), for a Zone with PTR records. An invalid ip
// fails the test.
func DNSReverseName(t testing.TB, ip string) string {
	t.Helper()
	name, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatalf("relaytest: reverse name of %q: %v", ip, err)
	}
	return name
}

// Addr is the server's address, "127.0.0.1:PORT", for UDP and TCP alike.
func (s *DNSServer) Addr() string { return s.addr }

// Set adds or replaces the zone of name while the server runs. A zone with
// malformed records fails the test.
func (s *DNSServer) Set(name string, z Zone) {
	if err := s.set(name, z); err != nil {
		s.t.Errorf("relaytest: %v", err)
	}
}

// Delete removes name from the zone map: it gets NXDOMAIN from now on.
func (s *DNSServer) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.zones, zoneKey(name))
}

func (s *DNSServer) set(name string, z Zone) error {
	if err := checkZone(name, z); err != nil {
		return err
	}
	z.MX = slices.Clone(z.MX)
	z.A, z.AAAA = slices.Clone(z.A), slices.Clone(z.AAAA)
	z.TXT, z.PTR = slices.Clone(z.TXT), slices.Clone(z.PTR)
	z.TLSA = slices.Clone(z.TLSA)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zones[zoneKey(name)] = z
	return nil
}

// checkZone rejects records the server could not encode, so that a typo in a
// test's zone fails loudly instead of turning into a mysterious NODATA.
func checkZone(name string, z Zone) error {
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return fmt.Errorf("zone %q: not a domain name", name)
	}
	for _, a := range z.A {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
			return fmt.Errorf("zone %q: A %q is not an IPv4 address", name, a)
		}
	}
	for _, a := range z.AAAA {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() || ip.Is4In6() {
			return fmt.Errorf("zone %q: AAAA %q is not an IPv6 address", name, a)
		}
	}
	for _, r := range z.TLSA {
		if _, err := hex.DecodeString(r.Data); err != nil || r.Data == "" {
			return fmt.Errorf("zone %q: TLSA data %q is not hex", name, r.Data)
		}
	}
	hosts := slices.Clone(z.PTR)
	for _, mx := range z.MX {
		hosts = append(hosts, mx.Host)
	}
	if z.CNAME != "" {
		hosts = append(hosts, z.CNAME)
	}
	for _, h := range hosts {
		if _, ok := dns.IsDomainName(h); !ok || h == "" {
			return fmt.Errorf("zone %q: %q is not a host name", name, h)
		}
	}
	return nil
}

func zoneKey(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// Queries lists the queries received so far, oldest first, as
// "MX example.com." (the name as asked). Queries that were never answered
// (Zone.Timeout) are listed too.
func (s *DNSServer) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.log))
	for i, q := range s.log {
		out[i] = q.String()
	}
	return out
}

// QueryLog is Queries with the transport of each query.
func (s *DNSServer) QueryLog() []DNSQuery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// ResetQueries empties the query log.
func (s *DNSServer) ResetQueries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

// ServeDNS answers one query; it implements dns.Handler.
func (s *DNSServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	if len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	network := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}

	s.mu.Lock()
	s.log = append(s.log, DNSQuery{Type: dns.TypeToString[q.Qtype], Name: q.Name, Net: network})
	first, known := s.zones[zoneKey(q.Name)]
	s.mu.Unlock()

	if known && first.Block != nil {
		select {
		case <-first.Block:
		case <-s.done:
			return
		}
	}
	switch {
	case known && first.Timeout:
		return
	case known && first.ServFail:
		resp.Rcode = dns.RcodeServerFailure
	case known && first.Refused:
		resp.Rcode = dns.RcodeRefused
	default:
		s.answer(resp, q)
	}
	if network == "udp" {
		// RFC 1035 §4.2.1 / RFC 6891 §6.2.5: a UDP answer fits the size the
		// client advertised (512 without EDNS0), with TC set when cut, so
		// that the client retries over TCP.
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

// answer fills resp for q, following CNAMEs through the zone map the way a
// recursive resolver would, so that the client sees the whole chain.
func (s *DNSServer) answer(resp *dns.Msg, q dns.Question) {
	s.mu.Lock()
	defer s.mu.Unlock()
	owner := q.Name
	// AD is set when every name of the answer is in a signed zone
	// (RFC 4035 §3.2.3); an unknown name is not.
	resp.AuthenticatedData = true
	for range 16 {
		z, ok := s.zones[zoneKey(owner)]
		resp.AuthenticatedData = resp.AuthenticatedData && ok && z.Secure
		if !ok || z.NXDomain {
			resp.Rcode = dns.RcodeNameError
			resp.Ns = append(resp.Ns, soa(owner, z.ttl()))
			return
		}
		if z.CNAME != "" && q.Qtype != dns.TypeCNAME {
			resp.Answer = append(resp.Answer, &dns.CNAME{
				Hdr:    hdr(owner, dns.TypeCNAME, z.ttl()),
				Target: dns.Fqdn(z.CNAME),
			})
			// The records behind the alias carry the owner name in lower
			// case whatever the case of the target: clients must compare
			// names case-insensitively (RFC 4343), and tests can tell.
			owner = zoneKey(z.CNAME)
			continue
		}
		rrs := z.records(owner, q.Qtype)
		if len(rrs) == 0 {
			// NODATA (RFC 2308 §2.2): NOERROR, empty answer, SOA for the
			// negative TTL.
			resp.Ns = append(resp.Ns, soa(owner, z.ttl()))
			return
		}
		resp.Answer = append(resp.Answer, rrs...)
		return
	}
	// A CNAME loop: what a recursive resolver reports.
	resp.Answer = nil
	resp.AuthenticatedData = false
	resp.Rcode = dns.RcodeServerFailure
}

func (z Zone) ttl() uint32 {
	if z.TTL == 0 {
		return DNSDefaultTTL
	}
	return z.TTL
}

func hdr(owner string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// soa is the authority record of a negative answer; its MINIMUM is the
// negative-caching TTL (RFC 2308 §4).
func soa(owner string, ttl uint32) dns.RR {
	return &dns.SOA{
		Hdr:     hdr(owner, dns.TypeSOA, ttl),
		Ns:      "ns.relaytest.invalid.",
		Mbox:    "hostmaster.relaytest.invalid.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  ttl,
	}
}

func (z Zone) records(owner string, qtype uint16) []dns.RR {
	ttl := z.ttl()
	var rrs []dns.RR
	switch qtype {
	case dns.TypeMX:
		if z.NullMX {
			return []dns.RR{&dns.MX{Hdr: hdr(owner, dns.TypeMX, ttl), Preference: 0, Mx: "."}}
		}
		for _, mx := range z.MX {
			rrs = append(rrs, &dns.MX{Hdr: hdr(owner, dns.TypeMX, ttl), Preference: mx.Pref, Mx: dns.Fqdn(mx.Host)})
		}
	case dns.TypeA:
		for _, a := range z.A {
			rrs = append(rrs, &dns.A{Hdr: hdr(owner, dns.TypeA, ttl), A: net.IP(netip.MustParseAddr(a).AsSlice())})
		}
	case dns.TypeAAAA:
		for _, a := range z.AAAA {
			rrs = append(rrs, &dns.AAAA{Hdr: hdr(owner, dns.TypeAAAA, ttl), AAAA: net.IP(netip.MustParseAddr(a).AsSlice())})
		}
	case dns.TypeTXT:
		for _, txt := range z.TXT {
			rrs = append(rrs, &dns.TXT{Hdr: hdr(owner, dns.TypeTXT, ttl), Txt: splitTXT(txt)})
		}
	case dns.TypePTR:
		for _, p := range z.PTR {
			rrs = append(rrs, &dns.PTR{Hdr: hdr(owner, dns.TypePTR, ttl), Ptr: dns.Fqdn(p)})
		}
	case dns.TypeTLSA:
		for _, r := range z.TLSA {
			rrs = append(rrs, &dns.TLSA{Hdr: hdr(owner, dns.TypeTLSA, ttl), Usage: r.Usage, Selector: r.Selector,
				MatchingType: r.MatchingType, Certificate: strings.ToLower(r.Data)})
		}
	case dns.TypeCNAME:
		if z.CNAME != "" {
			rrs = append(rrs, &dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME, ttl), Target: dns.Fqdn(z.CNAME)})
		}
	}
	return rrs
}

// splitTXT cuts a TXT value into the 255-byte character-strings of RFC 1035
// §3.3.14, as a long DKIM key is published. miekg/dns reads a backslash in
// a character-string as an escape (\DDD, \X), so it is escaped here.
func splitTXT(s string) []string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, escapeTXT(s[:255]))
		s = s[255:]
	}
	return append(parts, escapeTXT(s))
}

func escapeTXT(s string) string {
	return strings.ReplaceAll(s, `\`, `\\`)
}
