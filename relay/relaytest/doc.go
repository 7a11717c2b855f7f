// Package relaytest has the real peers facteur's tests run against on
// loopback, named like httptest: an in-process authoritative DNS server
// (miekg/dns) answering MX, A, AAAA, TXT and PTR from a zone map, given to
// the relay as its `resolver`, and go-smtp sinks on 127.0.0.x scripted per
// phase and per recipient (421 RP-001, 550 5.1.1, drop mid-DATA, stall past
// a timeout, STARTTLS with a self-signed certificate, broken TLS). Tests
// only: nothing in the daemon imports it.
package relaytest
