// Package dane authenticates an SMTP server's certificate chain with DANE
// TLSA records, as RFC 7672 §3 specifies for SMTP: only DANE-TA(2) and
// DANE-EE(3) records are usable, with selector Cert(0) or SPKI(1) and
// matching type Full(0), SHA2-256(1) or SHA2-512(2).
//
// It owns the matching only. Whether DANE applies (the DNSSEC status of the
// MX, address and TLSA answers) is relay/tlspolicy's decision; the TLSA
// lookup is relay/resolver's; the handshake is relay/delivery's. Hashing
// and record comparison are miekg/dns's (dns.TLSA.Verify), chain building
// for DANE-TA is crypto/x509's.
//
// Invariants: a DANE-EE match checks neither the name nor the validity
// dates of the certificate (RFC 7672 §3.1.1); a DANE-TA match requires a
// chain from the leaf to the matching certificate of the presented chain,
// valid now and for the MX host name (RFC 7672 §3.1.2, §3.2.2).
package dane
