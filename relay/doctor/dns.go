package doctor

import "facteur/relay/doctor/spf"

// DNS is what the checks ask of DNS: what SPF evaluation asks
// (spf.DNS, whose comment gives the error contract), since the SPF check
// hands it on. The checks call it from one goroutine except the block-list
// check, which queries its zones concurrently, so an implementation must be
// safe for concurrent use. facteur's resolver implements it.
type DNS interface {
	spf.DNS
}
