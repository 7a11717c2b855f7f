package policy

import "testing"

// TestClassifyProviderWording holds the rules that follow the providers' own wording and
// codes (Exchange Online's directory-based edge blocking, Cox's AUP# codes, Gmail's and
// Yahoo's texts) and the text-beats-code cases around them, each with a short reply written
// here in the providers' style: a rule must say what the text says, for any provider name.
func TestClassifyProviderWording(t *testing.T) {
	p := mustBuiltin(t)
	tests := []struct {
		name     string
		provider string
		reply    string
		class    Class
		suppress bool
	}{
		// Exchange Online: a recipient outside the tenant's directory, recognised by 5.4.1's
		// words and by the server's name, also for a domain not known to be Microsoft's.
		{"dbeb one recipient", DefaultProvider, "550 5.4.1 <ann@contoso.example>: Recipient address rejected: Access denied [AM4PEPF0001.eurprd04.prod.protection.outlook.com]", UserUnknown, true},
		{"dbeb every recipient", DefaultProvider, "550 5.4.1 All recipient addresses rejected : Access denied [SN1PEPF0002.namprd05.prod.protection.outlook.com]", UserUnknown, true},
		{"5.4.1 relay refusal", DefaultProvider, "550 5.4.1 Relay Access Denied ATTR35 [DB5PEPF0003.eurprd03.prod.protection.outlook.com]", OtherPermanent, false},
		{"5.4.1 access denied naming the IP", DefaultProvider, "550 5.4.1 Recipient address rejected: Access denied, your IP 192.0.2.7 is on our block list", IPBlocked, false},
		{"outlook signature", DefaultProvider, "550 5.5.0 Requested action not taken: mailbox unavailable. [BN8NAM11FT042.eop-nam11.prod.protection.outlook.com]", UserUnknown, true},
		{"hotmail trace", DefaultProvider, "550 Requested action not taken: mailbox unavailable (-1914347765:1020:-2147467259)", UserUnknown, true},
		{"unsigned mailbox unavailable stays other", DefaultProvider, "550 <ann@example.net>: Requested action not taken: mailbox unavailable", OtherPermanent, false},
		{"outlook signature naming a block", DefaultProvider, "550 5.5.0 Requested action not taken: mailbox unavailable. Your IP is on our block list [BN8NAM11FT042.eop-nam11.prod.protection.outlook.com]", IPBlocked, false},
		// Microsoft's 4.7.65x carry an S3xxx code and are rate limits, not blocks; a busy
		// PFA agent (4.7.700) is a busy server.
		{"4.7.652 connections", "microsoft", "451 4.7.652 The mail server [192.0.2.9] has exceeded the maximum number of connections. (S3115) [AB1PEPF0004.namprd02.prod.outlook.com]", RateLimited, false},
		{"4.7.650 with S3 code", "microsoft", "451 4.7.650 The mail server [192.0.2.9] has been temporarily rate limited due to IP reputation. (S3113)", RateLimited, false},
		{"4.7.700 busy", DefaultProvider, "451 4.7.700 PFA agent busy, please try again. [XY0PEPF0005.prod.protection.outlook.com]", OtherTemporary, false},
		{"5.7.708 still a block", DefaultProvider, "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.", IPBlocked, false},
		{"queue quota", DefaultProvider, "450 4.7.3 Organization queue quota exceeded. [contoso.example]", RateLimited, false},
		{"suspicious remote server", DefaultProvider, "450 4.4.318 Connection was closed abruptly (SuspiciousRemoteServerError)", OtherTemporary, false},
		// Cox: the AUP# code decides, whatever the words.
		{"cox dynamic rbl", DefaultProvider, "550 5.1.0 <bounce@news.example.com> sender rejected. AUP#CDRBL", IPBlocked, false},
		{"cox dnsbl", DefaultProvider, "554 5.7.1 192.0.2.3 rejected. AUP#IPBL0001", IPBlocked, false},
		{"cox rdns", DefaultProvider, "421 4.7.1 192.0.2.3 rDNS lookup failed. AUP#CXDNS", IPBlocked, false},
		{"cox sender auth", DefaultProvider, "550 5.7.1 sender domain authentication failed. AUP#CXSNDR", AuthFailure, false},
		{"cox connections", DefaultProvider, "421 4.7.0 too many sessions. AUP#CXCNCT", RateLimited, false},
		{"cox url", DefaultProvider, "554 5.7.1 message refused. AUP#URLBL011", PolicySpam, false},
		// Gmail.
		{"not a valid rfc 5321 address", "google", "553 5.1.2 The recipient address <ann.@example.com> is not a valid RFC 5321 address. - gsmtp", OtherPermanent, false},
		{"recipient domain not found", "google", "553 5.1.2 We weren't able to find the recipient domain. Please check for any spelling errors. - gsmtp", HostUnknown, true},
		{"domain reputation 421", "google", "421 4.7.0 [192.0.2.4] Our system has detected that this message is suspicious due to the very low reputation of the sending domain. - gsmtp", PolicySpam, false},
		{"ip reputation 421", "google", "421 4.7.0 [192.0.2.4] This message is suspicious due to the very low reputation of the sending IP address/domain. Mail sent from your IP address has been temporarily rate limited. - gsmtp", RateLimited, false},
		{"unusual rate, blocked", DefaultProvider, "550 5.7.1 Our system has detected an unusual rate of unsolicited mail originating from your IP address. Mail sent from your IP address has been blocked. - gsmtp", IPBlocked, false},
		{"unusual rate, temporarily blocked", DefaultProvider, "421 4.7.0 Our system has detected an unusual rate of unsolicited mail originating from your IP address. Mail sent from your IP address has been temporarily blocked. - gsmtp", RateLimited, false},
		{"relay limit", DefaultProvider, "550 5.4.5 Daily SMTP relay limit exceeded for user. - gsmtp", RateLimited, false},
		{"peak relay limit", DefaultProvider, "450 4.2.1 Peak SMTP relay limit exceeded for customer. - gsmtp", RateLimited, false},
		{"pipelining after starttls", DefaultProvider, "523 5.7.10 SMTP protocol violation, no commands allowed to pipeline after STARTTLS. - gsmtp", OtherPermanent, false},
		{"starttls repeated", DefaultProvider, "454 5.5.1 STARTTLS may not be repeated. - gsmtp", OtherTemporary, false},
		{"sending quota", DefaultProvider, "550 5.4.5 Daily sending quota exceeded. - gsmtp", RateLimited, false},
		{"malformed message", DefaultProvider, "554 5.6.0 Mail message is malformed. Not accepted. - gsmtp", PolicySpam, false},
		{"starttls still required", DefaultProvider, "530 5.7.0 Must issue a STARTTLS command first. - gsmtp", TLSRequired, false},
		{"per transaction", DefaultProvider, "452 4.5.3 Domain policy size per transaction exceeded, please try this recipient in a separate transaction. - gsmtp", OtherTemporary, false},
		{"authentication information", DefaultProvider, "550 5.7.26 This message does not have authentication information or fails to pass authentication checks. - gsmtp", AuthFailure, false},
		// Yahoo.
		{"dd no longer valid", "yahoo", "554 delivery error: dd ann@yahoo.example is no longer valid. [-20] - mta7.mail.bf1.yahoo.com", UserUnknown, true},
		{"older deferral", "yahoo", "421 Message from (192.0.2.5) temporarily deferred - 4.16.50. Please refer to http://postmaster.yahoo.com/errors/421-ts01.html", RateLimited, false},
		{"TSS09 as a 5xx", "yahoo", "553 5.7.2 [TSS09] All messages from 192.0.2.5 will be permanently deferred; Retrying will NOT succeed.", IPBlocked, false},
		// Other servers, by their words.
		{"ip blocked for volume", DefaultProvider, "554 This IP has been blocked for the day, for attempting to send too many messages containing content judged to be spam. IB111", IPBlocked, false},
		{"ip sent too many this hour", DefaultProvider, "550 This IP has sent too many messages this hour. IB504", RateLimited, false},
		{"client host rejected", DefaultProvider, "450 4.7.1 <mx.example.net[192.0.2.6]>: Client host rejected: may not be mail exchanger", IPBlocked, false},
		{"5.2.3 policy", DefaultProvider, "554 5.2.3 MailPolicy violation Error delivering to mailboxes", PolicySpam, false},
		{"5.2.3 size", DefaultProvider, "552 5.2.3 Message exceeds maximum fixed size", MessageTooBig, false},
		{"rejected by the user", DefaultProvider, "550 Your message was rejected by this user and was not delivered", PolicySpam, false},
		{"rejected by recipients", DefaultProvider, "550 Mail is rejected by recipients [IP: 192.0.2.8]", PolicySpam, false},
		{"message blocked", DefaultProvider, "550 5.7.1 [CS] Message blocked", PolicySpam, false},
		{"delivery requirements", DefaultProvider, "554 5.7.1 This message does not meet our delivery requirements", PolicySpam, false},
		{"from header", DefaultProvider, "550 ann@example.com Blank From: addresses are not allowed. Provide a valid From.", PolicySpam, false},
		{"ip as a from address", DefaultProvider, "550 ann@example.com IP addresses are not allowed as a From: Address. Provide a valid From.", PolicySpam, false},
		{"mail from address is the sender", DefaultProvider, "553 5.1.7 Invalid MAIL FROM: address <bounce@example>", OtherPermanent, false},
		{"duplicate dkim header", DefaultProvider, "554 Transaction failed: Duplicate header 'DKIM-Signature'.", PolicySpam, false},
		{"5.1.2 no such mailbox", DefaultProvider, "550 5.1.2 No such mailbox [MSG0031]", UserUnknown, true},
		{"5.4.4 invalid domain", DefaultProvider, "550 5.4.4 Invalid domain", HostUnknown, true},
		{"5.4.4 alone", DefaultProvider, "550 5.4.4 Unable to route", OtherPermanent, false},
		{"null mx wording", DefaultProvider, "550 Host does not accept mail", HostUnknown, true},
		{"does not accept mail from you", DefaultProvider, "550 Host does not accept mail from your network", OtherPermanent, false},
		{"address no longer valid", DefaultProvider, "550 ann@example.org is no longer valid", UserUnknown, true},
		{"quota violation on 5.1.1", DefaultProvider, "552 5.1.1 <ann@example.net> recipient rejected - quota violation", MailboxFull, false},
		{"ptr on an spf code", "google", "421 4.7.23 The sending IP address for this message doesn't have a PTR record. Your email has been temporarily rate limited. - gsmtp", RateLimited, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseReply(tt.reply)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Classify(tt.provider, r)
			if d.Class != tt.class || d.Suppress != tt.suppress {
				t.Errorf("%q\n got %s\nwant class=%s suppress=%t", tt.reply, d, tt.class, tt.suppress)
			}
		})
	}
}
