// Package relaytest has the real peers facteur's tests run against on
// loopback, named like httptest: an in-process authoritative DNS server
// (miekg/dns) answering MX, A, AAAA, TXT, PTR and TLSA from a zone map, with
// the AD bit for zones marked Secure as a validating resolver sets it, given
// to the relay as its `resolver`; go-smtp sinks on 127.0.0.x scripted per
// phase and per recipient (421 RP-001, 550 5.1.1, drop mid-DATA, stall past
// a timeout, STARTTLS with a self-signed or a CA-issued certificate, broken
// TLS); and a throwaway CA whose root goes in a pool or SSL_CERT_FILE.
// Tests only: nothing in the daemon imports it.
package relaytest
