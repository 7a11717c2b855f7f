package bounce

import (
	"strings"
	"testing"

	"facteur/policy"
)

// The bounces below are written by hand from each MTA's bounce template (Postfix's
// bounce(8) texts, Exim's "SMTP error from remote mail server after ...", Sendmail's
// transcript, qmail-send's "does not like recipient", Amazon SES's JSON notification, a
// Verizon-style MMS gateway), with example.org addresses: they test that the rules follow
// the formats, not the corpus' samples (issue 12).

const postfixMailFrom = `From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
To: app@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="pf"

--pf
Content-Type: text/plain

This is the mail system at host relay.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<carol@example.org>: host mx.example.org[192.0.2.9] said: 553 5.1.0
    <app@example.com>: domain example.com does not exist (in reply to MAIL
    FROM command)

--pf
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: rfc822; carol@example.org
Action: failed
Status: 5.1.0
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 553 5.1.0 <app@example.com>: domain example.com does
    not exist

--pf--
`

const postfixRcpt = `From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
To: app@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="pr"

--pr
Content-Type: text/plain

<dave@example.org>: host mx.example.org[192.0.2.9] said: 550 5.1.1
    <dave@example.org>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--pr
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: rfc822; dave@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <dave@example.org>: Recipient address
    rejected: User unknown in virtual mailbox table

--pr--
`

const postfixTryAgain = `From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
To: app@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="pd"

--pd
Content-Type: text/plain

<erin@example.org>: Host or domain name not found. Name service error for
    name=example.org type=MX: Host not found, try again

--pd
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: rfc822; erin@example.org
Action: failed
Status: 5.4.4
Diagnostic-Code: X-Postfix; Host or domain name not found. Name service error
    for name=example.org type=MX: Host not found, try again

--pd--
`

const eximMailFrom = `From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: app@example.com
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  frank@example.org
    host mx.example.org [192.0.2.9]
    SMTP error from remote mail server after MAIL FROM:<app@example.com> SIZE=1234:
    550 5.1.7 No such domain example.com

------ This is a copy of the message, including all the headers. ------

From: app@example.com
To: frank@example.org
Subject: hello
`

const eximRcptSelf = `From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: grace@example.org
Subject: Mail delivery failed: returning message to sender

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  grace@example.org
    host mx.example.org [192.0.2.9]
    SMTP error from remote mail server after RCPT TO:<grace@example.org>:
    550 5.1.1 <grace@example.org>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

From: grace@example.org
To: grace@example.org
`

const sendmailMulti = `From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>
To: app@example.com
Subject: Returned mail: see transcript for details

   ----- Transcript of session follows -----
While talking to mx.example.org:
>>> MAIL From:<app@example.com>
<<< 553 <app@example.com>... Domain of sender address does not exist
554 <heidi@example.org>... Service unavailable
550 <ivan@example.net>... Host unknown (Name server: example.net: host not found)
While talking to mx.example.com:
>>> RCPT To:<judy@example.com>
<<< 550 5.1.1 <judy@example.com>... User unknown
550 5.1.1 <judy@example.com>... User unknown

   ----- Unsent message follows -----
From: app@example.com
To: heidi@example.org
`

const qmailSenderRejected = `From: MAILER-DAEMON@relay.example.net
To: app@example.com
Subject: failure notice

Hi. This is the qmail-send program at relay.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<kim@example.org>:
Connected to 192.0.2.9 but sender was rejected.
Remote host said: 550 5.1.1 <app@example.com>... User unknown

--- Below this line is a copy of the message.
`

const qmailRcpt = `From: MAILER-DAEMON@relay.example.net
To: app@example.com
Subject: failure notice

Hi. This is the qmail-send program at relay.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<leo@example.org>:
192.0.2.9 does not like recipient.
Remote host said: 550 5.1.1 <leo@example.org>... No such user
Giving up on 192.0.2.9.

--- Below this line is a copy of the message.
`

const sharedReason = `From: MAILER-DAEMON@relay.example.net
To: app@example.com
Subject: Undeliverable mail

Your message could not be delivered to the following recipients:

  mia@example.org
  ned@example.org

The error that the other server returned was:
550 5.1.1 User unknown
`

const sesJSONBounce = `From: no-reply@sns.amazonaws.com
To: bounces@example.com
Subject: AWS Notification Message
Content-Type: text/plain

{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","reportingMTA":"dsn; a1-2.smtp-out.amazonses.com","bouncedRecipients":[{"emailAddress":"olga@example.org","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"},{"emailAddress":"paul@example.org","action":"failed","status":"5.7.1","diagnosticCode":"smtp; 550 5.7.1 Message rejected: sending IP 192.0.2.1 listed"}]},"mail":{"source":"app@example.com"}}
`

const mmsGateway = `From: MMSC NDR Administrator <sysadmin@mms.example.net>
To: app@example.com
Subject: Undeliverable Message

Message could not be delivered to mobile.
Error: No valid recipients for this MM

Original Message:
From: App <app@example.com>
To: 5550100@mms.example.net
Subject: hello
`

const quotedForward = `From: Quinn <quinn@example.com>
To: app@example.com
Subject: Fwd: Mail delivery failed: returning message to sender

FYI, this bounced:

> This message was created automatically by mail delivery software.
>
> A message that you sent could not be delivered to one or more of its
> recipients. This is a permanent error. The following address(es) failed:
>
>   rita@example.org
>     SMTP error from remote mail server after RCPT TO:<rita@example.org>:
>     550 5.1.1 <rita@example.org>: Recipient address rejected: User unknown
`

const interscan = `From: InterScan MSS <postmaster@relay.example.net>
To: app@example.com
Subject: Mail could not be delivered

This message was created automatically by mail delivery software.

Message could not be delivered to: <sam@example.org>

Sent <<< RCPT TO:<sam@example.org>
Received >>> 550 5.1.1 <sam@example.org>... User unknown
`

const yahooStyle = `From: MAILER-DAEMON@mta.example.net
To: app@example.com
Subject: Failure Notice

Sorry, we were unable to deliver your message to the following address.

<tom@example.org>:
Remote host said: 550 5.1.1 <tom@example.org>: Recipient address rejected: User unknown [RCPT_TO]

--- Below this line is a copy of the message.
`

const gmailStyle = `From: Mail Delivery Subsystem <mailer-daemon@mail.example.net>
To: app@example.com
Subject: Delivery Status Notification (Failure)

** Address not found **

Your message wasn't delivered to uma@example.org because the address couldn't be found, or is unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces.
`

const gmailBlocked = `From: Mail Delivery Subsystem <mailer-daemon@mail.example.net>
To: app@example.com
Subject: Delivery Status Notification (Failure)

** Message blocked **

Your message to vic@example.org has been blocked. See technical details below for more information.

The response from the remote server was:
550 5.1.1 Message rejected: the sending IP 192.0.2.1 is listed on a block list
`

const exchange2003 = `From: System Administrator <postmaster@mail.example.net>
To: app@example.com
Subject: Undeliverable: hello

Your message did not reach some or all of the intended recipients.

      Subject:  hello
      Sent:     1/1/2026 10:00 AM

The following recipient(s) could not be reached:

      wendy@example.org on 1/1/2026 10:00 AM
            The e-mail account does not exist at the organization this message was sent to.
            <mail.example.net #5.1.1>
`

const postfixData = `From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
To: app@example.com
Subject: Undelivered Mail Returned to Sender

This is the mail system at host relay.example.net.

<xena@example.org>: host mx.example.org[192.0.2.9] said: 550 5.1.1 User
    unknown (in reply to end of DATA command)
`

const eximNoMX = `From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: app@example.com
Subject: Mail delivery failed: returning message to sender

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  yann@example.org
    all relevant MX records point to non-existent hosts
`

const qmailNoHost = `From: MAILER-DAEMON@relay.example.net
To: app@example.com
Subject: failure notice

Hi. This is the qmail-send program at relay.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<zoe@example.org>:
Sorry, I couldn't find any host named example.org. (#5.1.2)

--- Below this line is a copy of the message.
`

const courierGreeting = `From: Courier mail server at relay.example.net <@>
To: app@example.com
Subject: NOTICE: mail delivery status.

This is a delivery status notification from relay.example.net,
running the Courier mail server.

The original message was received on Thu, 1 Jan 2026 10:00:00 +0000
from localhost [127.0.0.1]

<abe@example.org>: delivery to this address failed:

>>> EHLO relay.example.net
<<< 554 5.7.1 Your host is not allowed to connect
`

const eximAlias = `From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: app@example.com
Subject: Mail delivery failed: returning message to sender

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  bea@example.net
    generated by team@example.org
    host mx.example.net [192.0.2.9]
    SMTP error from remote mail server after RCPT TO:<bea@example.net>:
    550 5.1.1 <bea@example.net>: Recipient address rejected: User unknown
`

const eximFile = `From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: app@example.com
Subject: Mail delivery failed: returning message to sender

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  save to /var/mail/cal
    generated by cal@example.org
    mailbox is full: retry timeout exceeded
`

const quotedPostfix = `From: Quinn <quinn@example.com>
To: app@example.com
Subject: Fwd: Undelivered Mail Returned to Sender

Can you check this one?

> This is the mail system at host relay.example.net.
>
> <bill@example.org>: host mx.example.org[192.0.2.9] said: 550 5.1.1
> <bill@example.org>: Recipient address rejected: User unknown (in reply to
> RCPT TO command)
>
> From: App <app@example.com>
> To: carl@example.net
> Subject: hello
`

const dsnOtherAddress = `From: MAILER-DAEMON@relay.example.net
To: app@example.com
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="oa"

--oa
Content-Type: text/plain

Delivery to the following recipient failed permanently.

--oa
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: rfc822; dan@example.org
Action: failed
Status: 5.1.0
Diagnostic-Code: smtp; 550 5.1.0 <app@example.com>: Address rejected

--oa--
`

func TestFormats(t *testing.T) {
	p := builtin(t)
	type want struct {
		class    policy.Class
		stage    policy.Stage
		suppress bool
		soft     bool
	}
	tests := []struct {
		name string
		msg  string
		want map[string]want
	}{
		{"Postfix: reply to MAIL FROM names the sender's domain", postfixMailFrom,
			map[string]want{"carol@example.org": {policy.OtherPermanent, policy.StageMail, false, false}}},
		{"Postfix: reply to RCPT TO", postfixRcpt,
			map[string]want{"dave@example.org": {policy.UserUnknown, policy.StageRcpt, true, false}}},
		{"Postfix: transient DNS is not host_unknown", postfixTryAgain,
			map[string]want{"erin@example.org": {policy.OtherPermanent, "", false, false}}},
		{"Exim: after MAIL FROM, 5.1.7 about the sender's domain", eximMailFrom,
			map[string]want{"frank@example.org": {policy.OtherPermanent, policy.StageMail, false, false}}},
		{"Exim: a recipient who is also the bounce's To", eximRcptSelf,
			map[string]want{"grace@example.org": {policy.UserUnknown, policy.StageRcpt, true, false}}},
		{"Sendmail: each recipient gets its own transcript", sendmailMulti, map[string]want{
			"heidi@example.org": {policy.OtherPermanent, policy.StageMail, false, false},
			"ivan@example.net":  {policy.HostUnknown, "", true, false},
			"judy@example.com":  {policy.UserUnknown, policy.StageRcpt, true, false},
		}},
		{"qmail: sender rejected", qmailSenderRejected,
			map[string]want{"kim@example.org": {policy.OtherPermanent, policy.StageMail, false, false}}},
		{"qmail: recipient refused", qmailRcpt,
			map[string]want{"leo@example.org": {policy.UserUnknown, policy.StageRcpt, true, false}}},
		{"one reason for several recipients is soft", sharedReason, map[string]want{
			"mia@example.org": {policy.UserUnknown, "", false, true},
			"ned@example.org": {policy.UserUnknown, "", false, true},
		}},
		{"Amazon SES JSON: per recipient", sesJSONBounce, map[string]want{
			"olga@example.org": {policy.UserUnknown, "", true, false},
			"paul@example.org": {policy.IPBlocked, "", false, false},
		}},
		{"MMS gateway: the returned message's recipient", mmsGateway,
			map[string]want{"5550100@mms.example.net": {policy.UserUnknown, "", true, false}}},
		{"a bounce quoted in a forward", quotedForward,
			map[string]want{"rita@example.org": {policy.UserUnknown, policy.StageRcpt, true, false}}},
		{"a Postfix bounce quoted in a forward", quotedPostfix,
			map[string]want{"bill@example.org": {policy.UserUnknown, policy.StageRcpt, true, false}}},
		{"a reply about another address (the sender's)", dsnOtherAddress,
			map[string]want{"dan@example.org": {policy.OtherPermanent, "", false, false}}},
		{"InterScan: Sent <<< RCPT TO / Received >>>", interscan,
			map[string]want{"sam@example.org": {policy.UserUnknown, policy.StageRcpt, true, false}}},
		{"Yahoo: [RCPT_TO]", yahooStyle,
			map[string]want{"tom@example.org": {policy.UserUnknown, policy.StageRcpt, true, false}}},
		{"Gmail: address not found", gmailStyle,
			map[string]want{"uma@example.org": {policy.UserUnknown, "", true, false}}},
		{"Gmail: 5.1.1 on a block list", gmailBlocked,
			map[string]want{"vic@example.org": {policy.IPBlocked, "", false, false}}},
		{"Exchange 2003: account does not exist", exchange2003,
			map[string]want{"wendy@example.org": {policy.UserUnknown, "", true, false}}},
		{"Postfix: user unknown in reply to DATA is soft", postfixData,
			map[string]want{"xena@example.org": {policy.UserUnknown, policy.StageData, false, true}}},
		{"Exim: MX to nowhere", eximNoMX,
			map[string]want{"yann@example.org": {policy.HostUnknown, "", true, false}}},
		{"qmail: no host by that name", qmailNoHost,
			map[string]want{"zoe@example.org": {policy.HostUnknown, "", true, false}}},
		{"Exim: the alias that expanded to a failed address is not suppressed", eximAlias,
			map[string]want{"bea@example.net": {policy.UserUnknown, policy.StageRcpt, true, false}}},
		{"Exim: a file delivery names its address", eximFile,
			map[string]want{"cal@example.org": {policy.MailboxFull, "", false, true}}},
		{"Courier: refused at EHLO", courierGreeting,
			map[string]want{"abe@example.org": {policy.IPBlocked, policy.StageConnect, false, false}}},
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
				got[strings.ToLower(r.Address)] = want{r.Class, r.Stage, r.Suppress, r.Soft}
				if r.Evidence == "" || r.Rule == "" {
					t.Errorf("%s: no evidence or rule: %+v", r.Address, r)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("recipients %+v, want %+v", got, tt.want)
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

func TestStageIn(t *testing.T) {
	tests := map[string]policy.Stage{
		"host mx[192.0.2.1] said: 550 5.1.1 unknown (in reply to RCPT TO command)":        policy.StageRcpt,
		"said: 554 5.7.1 spam (in reply to end of DATA command)":                          policy.StageData,
		"SMTP error from remote mail server after MAIL FROM:<a@example.com> SIZE=10: 550": policy.StageMail,
		"SMTP error from remote mail server after initial connection: 554 go away":        policy.StageConnect,
		"host mx.example.org[192.0.2.1] refused to talk to me: 554 5.7.1 blocked":         policy.StageConnect,
		"192.0.2.1 does not like recipient. Remote host said: 550 no such user":           policy.StageRcpt,
		"Connected to 192.0.2.1 but sender was rejected.":                                 policy.StageMail,
		"192.0.2.1 failed after I sent the message.":                                      policy.StageData,
		"550 5.1.1 user unknown": policy.StageUnknown,
		"554 5.7.1 <a@example.com>: Sender address rejected: Access denied (in reply to RCPT TO command)": policy.StageRcpt,
		"553 5.1.8 <a@example.com>: Sender address rejected: Domain not found":                            policy.StageMail,
		"550 5.1.1 <b@example.org>: Recipient address rejected: User unknown":                             policy.StageRcpt,
		">>> RCPT To:<b@example.org> <<< 250 ok >>> DATA <<< 554 5.7.1 rejected":                          policy.StageData,
		"Sent <<< MAIL FROM:<a@example.com> Received >>> 553 sender rejected":                             policy.StageMail,
	}
	for in, want := range tests {
		if got := stageIn(in); got != want {
			t.Errorf("stageIn(%q) = %q, want %q", in, got, want)
		}
	}
}
