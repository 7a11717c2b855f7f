package bounce

import (
	"strings"
	"testing"

	"facteur/policy"
)

// More bounces written by hand from the MTAs' own templates (issue 12): each
// one holds a rule added for a format or a provider's wording that the
// first rules did not read. Addresses are example.org ones.

// Sendmail breaks a line longer than 990 bytes with "!", a newline and a
// space; an SES notification is one long line.
var sesSendmailBroken = `From: no-reply@sns.amazonaws.com
To: bounces@example.com
Subject: AWS Notification Message
Content-Type: text/plain

{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"ada@example.org","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},"mail":{"source":"app@example.com","headers":[{"name":"Subject","value":"` +
	strings.Repeat("x", 900) + `!
 yz"}]}}
`

// SNS's e-mail-json delivery: the SES notification is the string Message.
const snsEnvelope = `From: AWS Notifications <no-reply@sns.amazonaws.com>
To: bounces@example.com
Subject: AWS Notification Message
Content-Type: text/plain

{
  "Type" : "Notification",
  "TopicArn" : "arn:aws:sns:eu-west-1:000000000000:bounces",
  "Message" : "{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\",\"bouncedRecipients\":[{\"emailAddress\":\"ben@example.org\",\"action\":\"failed\",\"status\":\"5.1.1\",\"diagnosticCode\":\"smtp; 550 5.1.1 no such user\"}]},\"mail\":{\"source\":\"app@example.com\"}}",
  "Timestamp" : "2024-01-02T03:04:05.000Z"
}
`

// A content filter that could not pass a bounce on returns it attached to
// its own notice, which names nobody.
const wrappedDSN = `From: Mail Delivery Subsystem <MAILER-DAEMON@gw.example.net>
To: app@example.com
Subject: Returned mail: see transcript for details
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain

----- The following addresses had permanent delivery errors -----

--outer
Content-Type: message/rfc822

From: Mail Delivery Subsystem <MAILER-DAEMON@mta.example.net>
To: app@example.com
Subject: Returned mail: see transcript for details
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="inner"

--inner
Content-Type: text/plain

The original message could not be delivered.

--inner
Content-Type: message/delivery-status

Reporting-MTA: dns; mta.example.net

Final-Recipient: RFC822; cleo@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: SMTP; 550 5.1.1 <cleo@example.org>... User unknown

--inner--

--outer--
`

// A person's message forwarded as an attachment is not a bounce, even when
// the forward names nobody.
const forwardedMail = `From: Dora <dora@example.com>
To: app@example.com
Subject: Fwd: hello
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fw"

--fw
Content-Type: text/plain

See attached.

--fw
Content-Type: message/rfc822

From: Eve <eve@example.org>
To: dora@example.com
Subject: hello

user unknown? no, just hello.

--fw--
`

func dsnWith(rcpt, status, diag string) string {
	return `From: MAILER-DAEMON@relay.example.net
To: app@example.com
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="d"

--d
Content-Type: text/plain

Delivery to the following recipient failed permanently.

--d
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: rfc822; ` + rcpt + `
Action: failed
Status: ` + status + `
Diagnostic-Code: smtp; ` + diag + `

--d--
`
}

// Gmail's "Address not found" notice, with a DSN that says only 5.0.0.
const gmailAddressNotFound = `From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: app@example.com
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="g"

--g
Content-Type: text/plain; charset=UTF-8

** Address not found **

Your message wasn't delivered to fay@example.org because the address couldn't be found. Check for typos or unnecessary spaces and try again.

--g
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com

Final-Recipient: rfc822; fay@example.org
Action: failed
Status: 5.0.0

--g--
`

// The same notice with the wording Gmail also uses over a refused sender
// or a disabled account: no evidence that the address does not exist.
var gmailUnableToReceive = strings.NewReplacer("fay@", "gwen@",
	"couldn't be found. Check for typos or unnecessary spaces and try again.",
	"couldn't be found, or is unable to receive mail.").Replace(gmailAddressNotFound)

func dragonfly(rcpt, host string) string {
	return `From: MAILER-DAEMON <>
To: app@example.com
Subject: Mail delivery failed
Received: from MAILER-DAEMON
	id 1a2b
	by relay.example.net (DragonFly Mail Agent v0.13);
	Mon, 1 Jan 2024 00:00:00 +0000

This is the DragonFly Mail Agent v0.13 at relay.example.net.

There was an error delivering your mail to <` + rcpt + `>.

DNS lookup failure: host ` + host + ` not found

Message headers follow.

From: <app@example.com>
To: <` + rcpt + `>
`
}

// IMail: the reason and the address on one line, no reply code.
const imail = `From: "Postmaster" <postmaster@mail.example.org>
To: <app@example.com>
Subject: Undeliverable Mail
X-Mailer: <SMTP32 v8.12>

Invalid final delivery userid: gus@example.org


Original message follows.

From: app@example.com
To: gus@example.org
`

// Verizon's gateway: the error, then the failed message's envelope, whose
// "Size (in bytes)" is no reply code.
const verizonDetails = `From: post_master@vtext.example.net
To: app@example.com
Subject: Re:hello

Error: Invalid user address

Error message below:
550 - Requested action not taken: no such user here

Message details:
  Subject: hello
  MAIL FROM: app@example.com
  RCPT TO: 5550101@vtext.example.net
  From: app@example.com
  Size (in bytes): 421
  Number of lines: 2
`

// A Japanese ISP's notice: neither a daemon sender nor an English subject.
const japaneseISP = `From: no-reply@mail.example.jp
To: <app@example.com>
Subject: メールエラー通知
Content-Type: text/plain; charset=UTF-8

送信先のメールボックスが一杯のため、送信できませんでした。

Your mail sent on: Mon, 1 Jan 2024 09:00:00 +0900
     Could not be delivered to: <hana@example.jp>
     As their mailbox is full.
`

// 1&1: "a@b:" alone on its line above the error; here a@b is also the
// bounce's To (a message sent to oneself).
const einsUndEinsSelf = `From: "Mail Delivery System" <mailer-daemon@mx.example.net>
To: ida@example.org
Subject: Mail delivery failed: returning message to sender

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of
its recipients. This is a permanent error. The following address(es)
failed:

ida@example.org:
SMTP error from remote server for RCPT TO command, host: mx.example.org (192.0.2.7) reason: 550 5.1.1 <ida@example.org> mailbox unknown

--- The header of the original message is following. ---

From: ida@example.org
To: ida@example.org
`

// Exim names a local delivery by its local part only; the address is in
// X-Failed-Recipients. The reason under it is a reply to MAIL FROM.
const eximLocalPart = `From: Mail Delivery System <Mailer-Daemon@relay.example.net>
To: app@example.com
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: jon@example.org

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  jon
    SMTP error from remote mail server after MAIL FROM:<app@example.com> SIZE=1000:
    host mx.example.org [192.0.2.8]: 550 5.7.0 <app@example.com>... Please use the smtp server of your ISP.

------ This is a copy of the message, including all the headers. ------

From: app@example.com
To: jon@example.org
`

// The same with a mailbox that is full: the reason is read from under the
// heading.
var eximLocalPartFull = strings.NewReplacer("jon\n", "lee\n", "jon@", "lee@",
	`    SMTP error from remote mail server after MAIL FROM:<app@example.com> SIZE=1000:
    host mx.example.org [192.0.2.8]: 550 5.7.0 <app@example.com>... Please use the smtp server of your ISP.`,
	"    mailbox is full: retry timeout exceeded").Replace(eximLocalPart)

func TestMTARules(t *testing.T) {
	p := builtin(t)
	type want struct {
		class    policy.Class
		suppress bool
		soft     bool
	}
	tests := []struct {
		name string
		msg  string
		want map[string]want
	}{
		{"SES JSON broken by Sendmail's long-line split", sesSendmailBroken,
			map[string]want{"ada@example.org": {policy.UserUnknown, true, false}}},
		{"SES notification inside SNS's envelope", snsEnvelope,
			map[string]want{"ben@example.org": {policy.UserUnknown, true, false}}},
		{"a DSN attached to a gateway's notice", wrappedDSN,
			map[string]want{"cleo@example.org": {policy.UserUnknown, true, false}}},
		{"a forwarded message is not a wrapped bounce", forwardedMail, map[string]want{}},
		{"550 5.4.4 Invalid domain", dsnWith("eli@nowhere.example.org", "5.4.4", "550 5.4.4 Invalid domain"),
			map[string]want{"eli@nowhere.example.org": {policy.HostUnknown, true, false}}},
		{"invalid domain of the sender", dsnWith("eli@example.org", "5.1.8", "553 5.1.8 <app@example.com>: Sender address rejected: Invalid domain"),
			map[string]want{"eli@example.org": {policy.OtherPermanent, false, false}}},
		{"Gmail: the address couldn't be found", gmailAddressNotFound,
			map[string]want{"fay@example.org": {policy.UserUnknown, true, false}}},
		{"Gmail: couldn't be found, or is unable to receive mail", gmailUnableToReceive,
			map[string]want{"gwen@example.org": {policy.OtherPermanent, false, false}}},
		{"DragonFly: the recipient's domain not found", dragonfly("gil@gone.example.org", "gone.example.org"),
			map[string]want{"gil@gone.example.org": {policy.HostUnknown, true, false}}},
		{"DragonFly: the smarthost not found", dragonfly("gil@example.org", "smarthost.example.net"),
			map[string]want{"gil@example.org": {policy.OtherPermanent, false, false}}},
		{"IMail: invalid final delivery userid", imail,
			map[string]want{"gus@example.org": {policy.UserUnknown, true, false}}},
		{"Verizon: error above the message details", verizonDetails,
			map[string]want{"5550101@vtext.example.net": {policy.UserUnknown, true, false}}},
		{"Japanese ISP notice: mailbox full", japaneseISP,
			map[string]want{"hana@example.jp": {policy.MailboxFull, false, true}}},
		{"1&1: the recipient is also the bounce's To", einsUndEinsSelf,
			map[string]want{"ida@example.org": {policy.UserUnknown, true, false}}},
		{"Exim: a local part and X-Failed-Recipients, reply to MAIL FROM", eximLocalPart,
			map[string]want{"jon@example.org": {policy.IPBlocked, false, false}}},
		{"Exim: a local part and X-Failed-Recipients, mailbox full", eximLocalPartFull,
			map[string]want{"lee@example.org": {policy.MailboxFull, false, true}}},
		{"Biglobe: too many messages in the mailbox",
			dsnWith("kai@example.jp", "5.0.0", "550 The number of messages in recipient's mailbox exceeded the local limit."),
			map[string]want{"kai@example.jp": {policy.MailboxFull, false, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Parse(strings.NewReader(crlf(tt.msg)))
			if err != nil {
				t.Fatal(err)
			}
			Decide(rep, p)
			got := map[string]want{}
			for _, r := range rep.Recipients {
				got[strings.ToLower(r.Address)] = want{r.Class, r.Suppress, r.Soft}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("recipients %+v (kind %s), want %+v", got, rep.Kind, tt.want)
			}
			for a, w := range tt.want {
				if got[a] != w {
					t.Errorf("%s: got %+v, want %+v", a, got[a], w)
				}
			}
			if t.Failed() {
				for _, r := range rep.Recipients {
					t.Logf("%s: rule %s evidence %q diagnostic %q", r.Address, r.Rule, r.Evidence, r.Diagnostic)
				}
			}
		})
	}
}
