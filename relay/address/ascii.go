package address

// IsASCII reports whether s holds only 7-bit characters: an address or a
// domain that needs no SMTPUTF8 (RFC 6531) and no IDNA conversion, a
// message that needs no 8BITMIME (RFC 6152). It is the one such test in
// facteur, for strings and byte slices alike.
func IsASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
