#!/usr/bin/env python3
"""Writes the hold-out bounces of policy/bounce/testdata/holdout (hNNN.eml and
expected.tsv) from each MTA's bounce template, as the MTA's documentation and
source word them. Names are example.org/example.net/.invalid, addresses
192.0.2.x/198.51.100.x/203.0.113.x. Labels say what the words mean: a
permanent reply naming a policy, block or rate is not userunknown; doubt
does not suppress. Run from this directory: python3 gen.py"""
import json, os

DATE = "Mon, 7 Dec 2026 01:10:00 +0000"
SENDER = "app@example.org"
SUBJ = "Your invoice"
ORIG = ("Return-Path: <app@example.org>\nFrom: Shop <app@example.org>\n"
        "To: {rcpt}\nSubject: Your invoice\nMessage-ID: <inv-{n}@example.org>\n"
        "Date: " + DATE + "\n\nHello, your invoice is attached.\n")
n = 0
rows = []

def write(text, labels):
    global n
    n += 1
    name = "h%03d.eml" % n
    with open(name, "w") as f:
        f.write(text.replace("{N}", str(n)))
    for rcpt, reason, status, supp, mta in labels:
        rows.append((name, rcpt, reason, status, supp, mta))

def dsn_part(reporting, rcpts):
    s = "Reporting-MTA: dns; %s\nArrival-Date: %s\n" % (reporting, DATE)
    for r in rcpts:
        s += "\nFinal-Recipient: rfc822; %s\nOriginal-Recipient: rfc822;%s\nAction: %s\nStatus: %s\n" % (r["rcpt"], r["rcpt"], r.get("action", "failed"), r["status"])
        if r.get("rmta"):
            s += "Remote-MTA: dns; %s\n" % r["rmta"]
        if r.get("diag"):
            s += "Diagnostic-Code: smtp; %s\n" % r["diag"]
    return s

def report(frm, subject, human, dsn, rcpt0, extra_headers=""):
    b = "BOUNDARY.{N}.holdout"
    return ("From: %s\nTo: <%s>\nSubject: %s\nDate: %s\nMessage-ID: <bounce-{N}@example.net>\n%s"
            "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"%s\"\n\n"
            "This is a MIME-encapsulated message.\n\n--%s\nContent-Type: text/plain; charset=us-ascii\n\n%s\n"
            "--%s\nContent-Type: message/delivery-status\n\n%s\n--%s\nContent-Type: text/rfc822-headers\n\n%s--%s--\n") % (
        frm, SENDER, subject, DATE, extra_headers, b, b, human, b, dsn, b,
        ORIG.replace("{rcpt}", rcpt0).split("\n\n")[0] + "\n", b)

def plain(frm, subject, body, extra_headers=""):
    return ("From: %s\nTo: <%s>\nSubject: %s\nDate: %s\nMessage-ID: <bounce-{N}@example.net>\n%s"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n%s") % (frm, SENDER, subject, DATE, extra_headers, body)

STAGE_PF = {"rcpt": "RCPT TO", "mail": "MAIL FROM", "data": "end of DATA", "connect": None}

def postfix(rcpt, diag, stage, status, host="mx1.example.net", ip="192.0.2.25", dsn=True, action="failed"):
    said = "host %s[%s] said: %s" % (host, ip, diag)
    if stage == "connect":
        said = "host %s[%s] refused to talk to me: %s" % (host, ip, diag)
    elif STAGE_PF.get(stage):
        said += " (in reply to %s command)" % STAGE_PF[stage]
    if action == "delayed":
        human = ("This is the mail system at host relay.example.org.\n\n####################################################################\n"
                 "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n####################################################################\n\n"
                 "Your message could not be delivered for more than 4 hour(s).\nIt will be retried until it is 5 day(s) old.\n\n"
                 "For further assistance, please send mail to postmaster.\n\n                   The mail system\n\n<%s>: %s\n" % (rcpt, said))
        subj = "Delayed Mail (still being retried)"
    else:
        human = ("This is the mail system at host relay.example.org.\n\nI'm sorry to have to inform you that your message could not\n"
                 "be delivered to one or more recipients. It's attached below.\n\nFor further assistance, please send mail to postmaster.\n\n"
                 "If you do so, please include this problem report. You can\ndelete your own text from the attached returned message.\n\n"
                 "                   The mail system\n\n<%s>: %s\n" % (rcpt, said))
        subj = "Undelivered Mail Returned to Sender"
    d = dsn_part("relay.example.org", [dict(rcpt=rcpt, status=status, rmta=host, diag=diag, action=action)])
    if not dsn:
        return plain("MAILER-DAEMON@relay.example.org (Mail Delivery System)", subj, human)
    return report("MAILER-DAEMON@relay.example.org (Mail Delivery System)", subj, human, d, rcpt)

def postfix_local(rcpt, text, status, multi=None):
    """Postfix messages that carry no remote reply (DNS, local)."""
    human = ("This is the mail system at host relay.example.org.\n\nI'm sorry to have to inform you that your message could not\n"
             "be delivered to one or more recipients. It's attached below.\n\n                   The mail system\n\n<%s>: %s\n" % (rcpt, text))
    d = "Reporting-MTA: dns; relay.example.org\n\nFinal-Recipient: rfc822; %s\nAction: failed\nStatus: %s\nDiagnostic-Code: X-Postfix; %s\n" % (rcpt, status, text)
    return report("MAILER-DAEMON@relay.example.org (Mail Delivery System)", "Undelivered Mail Returned to Sender", human, d, rcpt)

EXIM_AFTER = {"rcpt": "RCPT TO:<{r}>", "mail": "MAIL FROM:<app@example.org> SIZE=2048", "data": "end of data", "connect": "initial connection"}

def exim(rcpt, diag, stage, status=None, host="mx.example.net", ip="198.51.100.7", dsn=False):
    after = EXIM_AFTER[stage].replace("{r}", rcpt)
    lines = "\n    ".join(diag.split("\n"))
    human = ("This message was created automatically by mail delivery software.\n\n"
             "A message that you sent could not be delivered to one or more of its\n"
             "recipients. This is a permanent error. The following address(es) failed:\n\n"
             "  %s\n    host %s [%s]\n    SMTP error from remote mail server after %s:\n    %s\n" % (rcpt, host, ip, after, lines))
    if dsn:
        d = ("Reporting-MTA: dns; smtp.example.org\n\nAction: failed\nFinal-Recipient: rfc822;%s\nStatus: %s\nRemote-MTA: dns; %s\n"
             "Diagnostic-Code: smtp; %s\n") % (rcpt, status, host, diag.replace("\n", " "))
        return report("Mail Delivery System <Mailer-Daemon@smtp.example.org>", "Mail delivery failed: returning message to sender", human, d, rcpt,
                      "X-Failed-Recipients: %s\nAuto-Submitted: auto-replied\n" % rcpt)
    body = human + "\n------ This is a copy of the message, including all the headers. ------\n\n" + ORIG.replace("{rcpt}", rcpt)
    return plain("Mail Delivery System <Mailer-Daemon@smtp.example.org>", "Mail delivery failed: returning message to sender", body,
                 "X-Failed-Recipients: %s\nAuto-Submitted: auto-replied\n" % rcpt)

def exim_local(rcpt, text):
    body = ("This message was created automatically by mail delivery software.\n\n"
            "A message that you sent could not be delivered to one or more of its\n"
            "recipients. This is a permanent error. The following address(es) failed:\n\n  %s\n    %s\n"
            "\n------ This is a copy of the message, including all the headers. ------\n\n" % (rcpt, text)) + ORIG.replace("{rcpt}", rcpt)
    return plain("Mail Delivery System <Mailer-Daemon@smtp.example.org>", "Mail delivery failed: returning message to sender", body,
                 "X-Failed-Recipients: %s\nAuto-Submitted: auto-replied\n" % rcpt)

SM_CMD = {"rcpt": ">>> RCPT To:<{r}>", "mail": ">>> MAIL From:<app@example.org> SIZE=2048", "data": ">>> .", "connect": "<<< (greeting)"}

def sendmail(rcpt, diag, stage, status, host="mx.example.net", perm=True, reason=None):
    code = diag.split(" ")[0]
    cmd = SM_CMD[stage].replace("{r}", rcpt)
    if stage == "data":
        cmd = ">>> DATA\n<<< 354 Enter mail, end with \".\" on a line by itself\n>>> ."
    human = ("The original message was received at %s\nfrom localhost [127.0.0.1]\n\n"
             "   ----- The following addresses had permanent fatal errors -----\n<%s>\n    (reason: %s)\n\n"
             "   ----- Transcript of session follows -----\n... while talking to %s.:\n%s\n<<< %s\n%s\n") % (
        DATE, rcpt, reason or diag, host, cmd, diag, diag)
    d = ("Reporting-MTA: dns; smtp.example.org\nReceived-From-MTA: DNS; localhost\nArrival-Date: %s\n\n"
         "Final-Recipient: RFC822; %s\nAction: failed\nStatus: %s\nRemote-MTA: DNS; %s\nDiagnostic-Code: SMTP; %s\nLast-Attempt-Date: %s\n") % (DATE, rcpt, status, host, diag, DATE)
    return report("Mail Delivery Subsystem <MAILER-DAEMON@smtp.example.org>", "Returned mail: see transcript for details", human, d, rcpt)

def qmail(rcpt, said, stage="rcpt", ip="203.0.113.9"):
    verb = {"rcpt": "%s does not like recipient.\nRemote host said: %s\nGiving up on %s.",
            "mail": "Connected to %s but sender was rejected.\nRemote host said: %s\nGiving up on %s.",
            "data": "%s failed after I sent the message.\nRemote host said: %s",
            "connect": "Connected to %s but greeting failed.\nRemote host said: %s"}[stage]
    txt = verb % ((ip, said, ip) if stage in ("rcpt", "mail") else (ip, said))
    body = ("Hi. This is the qmail-send program at mail.example.org.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\n\n<%s>:\n%s\n\n--- Below this line is a copy of the message.\n\n" % (rcpt, txt)) + ORIG.replace("{rcpt}", rcpt)
    return plain("MAILER-DAEMON@mail.example.org", "failure notice", body)

def qmail_local(rcpt, text):
    body = ("Hi. This is the qmail-send program at mail.example.net.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\n\n<%s>:\n%s\n\n--- Below this line is a copy of the message.\n\n" % (rcpt, text)) + ORIG.replace("{rcpt}", rcpt)
    return plain("MAILER-DAEMON@mail.example.net", "failure notice", body)

def exchange(rcpt, diag, status, title="Your message couldn't be delivered", remote="MW2PR00MB0001.namprd00.prod.outlook.com"):
    human = ("%s\n\n%s wasn't found at example.net.\n\n" % (title, rcpt.split("@")[0]) if status.startswith("5.1.") else "%s\n\n" % title) + \
        ("Delivery has failed to these recipients or groups:\n\n%s\n%s\n\nDiagnostic information for administrators:\n\nGenerating server: %s\n\n%s\nRemote Server returned '%s'\n" % (
            rcpt, "The email address you entered couldn't be found or the message was rejected. Please check the address and try again.", remote, rcpt, diag))
    d = ("Reporting-MTA: dns;%s\nReceived-From-MTA: dns;relay.example.org\nArrival-Date: %s\n\nFinal-Recipient: rfc822;%s\nAction: failed\nStatus: %s\nDiagnostic-Code: smtp;%s\n") % (remote, DATE, rcpt, status, diag)
    return report("Microsoft Outlook <postmaster@example.net>", "Undeliverable: " + SUBJ, human, d, rcpt)

def exchange_relay(rcpt, diag, status, remote_host="mx.example.invalid"):
    human = ("Delivery has failed to these recipients or groups:\n\n%s (%s)\nA problem occurred during the delivery of this message to this e-mail address. Try sending this message again.\n\n"
             "Diagnostic information for administrators:\n\nGenerating server: EXCH01.corp.example.org\n\n%s\n%s #%s ##\n") % (rcpt, rcpt, rcpt, remote_host, diag.replace(" ", " ", 0))
    d = ("Reporting-MTA: dns;EXCH01.corp.example.org\n\nFinal-Recipient: rfc822;%s\nAction: failed\nStatus: %s\nDiagnostic-Code: smtp;%s\nRemote-MTA: dns;%s\n") % (rcpt, status, diag, remote_host)
    return report("postmaster@corp.example.org", "Undeliverable: " + SUBJ, human, d, rcpt)

def gmail(rcpt, diag, status, title="Address not found", lead=None):
    lead = lead or "Your message wasn't delivered to %s because the address couldn't be found, or is unable to receive mail." % rcpt
    human = ("\n** %s **\n\n%s\n\nThe response from the remote server was:\n%s\n") % (title, lead, diag)
    d = ("Reporting-MTA: dns; googlemail.com\nArrival-Date: %s\n\nFinal-Recipient: rfc822; %s\nAction: failed\nStatus: %s\nRemote-MTA: dns; mx.example.net. (198.51.100.3, the server for the domain example.net.)\nDiagnostic-Code: smtp; %s\nLast-Attempt-Date: %s\n") % (DATE, rcpt, status, diag.replace("\n", "\n "), DATE)
    return report("Mail Delivery Subsystem <mailer-daemon@googlemail.com>", "Delivery Status Notification (Failure)", human, d, rcpt)

def courier(rcpt, diag, stage, status, host="mx.example.net"):
    cmd = {"rcpt": "RCPT TO:<%s>" % rcpt, "mail": "MAIL FROM:<app@example.org>", "data": "DATA"}[stage]
    human = ("This is a delivery status notification from mail.example.org,\nrunning the Courier mail server, version 1.1.\n\n"
             "The original message was received on %s\nfrom localhost [127.0.0.1]\n\n"
             "---------------------------------------------------------------------------\n\n                           UNDELIVERABLE MAIL\n\n"
             "Your message to the following recipients cannot be delivered:\n\n<%s>:\n    %s [198.51.100.20]:\n>>> %s\n<<< %s\n\n"
             "---------------------------------------------------------------------------\n") % (DATE, rcpt, host, cmd, diag)
    d = ("Reporting-MTA: dns; mail.example.org\nArrival-Date: %s\n\nFinal-Recipient: rfc822; %s\nAction: failed\nStatus: %s\nRemote-MTA: dns; %s\nDiagnostic-Code: smtp; %s\n") % (DATE, rcpt, status, host, diag)
    return report("Courier mail server at mail.example.org <@>", "NOTICE: mail delivery status.", human, d, rcpt)

def ses(rcpt, btype, sub, status, diag, action="failed"):
    doc = {"notificationType": "Bounce", "bounce": {"feedbackId": "0100-holdout-{N}", "bounceType": btype, "bounceSubType": sub,
           "bouncedRecipients": [{"emailAddress": rcpt, "action": action, "status": status, "diagnosticCode": diag}],
           "timestamp": "2026-12-07T01:10:00.000Z", "remoteMtaIp": "198.51.100.44", "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com"},
           "mail": {"timestamp": "2026-12-07T01:09:58.000Z", "source": SENDER, "messageId": "0102-holdout-{N}", "destination": [rcpt]}}
    return plain("no-reply@sns.amazonaws.com", "AWS Notification Message", json.dumps(doc, indent=2) + "\n\n--\nIf you wish to stop receiving notifications from this topic, please click or visit the link below to unsubscribe:\n")

def domino(rcpt, because):
    body = ("Your message\n\n  Subject: %s\n\nwas not delivered to:\n\n  %s\n\nbecause:\n\n  %s\n") % (SUBJ, rcpt, because)
    return plain("Postmaster <postmaster@notes.example.net>", "DELIVERY FAILURE: " + because.split(".")[0][:50], body)

def generic_text(frm, subject, body, headers=""):
    return plain(frm, subject, body, headers)

U = "userunknown"; H = "hostunknown"
# ---------------- Postfix, each stage and many remote wordings ----------------
P = [
 ("nobody1@example.net", "550 5.1.1 <nobody1@example.net>: Recipient address rejected: User unknown in virtual mailbox table", "rcpt", "5.1.1", U, "yes"),
 ("nobody2@example.net", "550 5.1.1 <nobody2@example.net>: Recipient address rejected: User unknown in local recipient table", "rcpt", "5.1.1", U, "yes"),
 ("nobody3@example.net", "550 5.1.1 <nobody3@example.net>... User unknown", "rcpt", "5.1.1", U, "yes"),
 ("nobody4@example.net", "550 No such user here", "rcpt", "5.0.0", U, "yes"),
 ("nobody5@example.net", "550 5.1.1 Mailbox does not exist", "rcpt", "5.1.1", U, "yes"),
 ("nobody6@example.net", "550 Unknown user", "rcpt", "5.0.0", U, "yes"),
 ("nobody7@example.net", "550 5.1.1 <nobody7@example.net>: Recipient address rejected: undeliverable address: host mailstore.example.net[192.0.2.60] said: 550 5.1.1 <nobody7@example.net>: Recipient address rejected: User unknown in virtual alias table (in reply to RCPT TO command)", "rcpt", "5.1.1", U, "yes"),
 ("nobody8@example.net", "550 5.5.1 Invalid recipient <nobody8@example.net>", "rcpt", "5.5.1", U, "yes"),
 ("nobody9@example.net", "550 Requested action not taken: mailbox unavailable", "rcpt", "5.0.0", U, "no"),
 ("fullbox1@example.net", "552 5.2.2 <fullbox1@example.net>: Recipient address rejected: Mailbox full", "rcpt", "5.2.2", "mailboxfull", "no"),
 ("fullbox2@example.net", "452 4.2.2 Quota exceeded (mailbox for user is full)", "rcpt", "4.2.2", "mailboxfull", "no"),
 ("fullbox3@example.net", "552 5.2.2 Over quota", "data", "5.2.2", "mailboxfull", "no"),
 ("grey1@example.net", "450 4.7.1 <grey1@example.net>: Recipient address rejected: Greylisted, see http://postgrey.example.net/help/example.net", "rcpt", "4.7.1", "expired", "no"),
 ("grey2@example.net", "451 4.7.1 Please try again later", "rcpt", "4.7.1", "expired", "no"),
 ("rbl1@example.net", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1", "rcpt", "5.7.1", "blocked", "no"),
 ("rbl2@example.net", "550 5.7.1 <rbl2@example.net>: Recipient address rejected: Access denied", "rcpt", "5.7.1", "rejected", "no"),
 ("rbl3@example.net", "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied", "rcpt", "5.7.1", "blocked", "no"),
 ("ptr1@example.net", "450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]", "rcpt", "4.7.1", "requireptr", "no"),
 ("ptr2@example.net", "550 5.7.25 [192.0.2.1] The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not point to the sending IP.", "data", "5.7.25", "requireptr", "no"),
 ("snd1@example.net", "553 5.1.8 <app@example.org>: Sender address rejected: Domain not found", "mail", "5.1.8", "rejected", "no"),
 ("snd2@example.net", "550 5.1.0 <app@example.org>: Sender address rejected: User unknown in local recipient table", "rcpt", "5.1.0", "rejected", "no"),
 ("snd3@example.net", "550 5.7.1 Sender address rejected: not owned by user", "mail", "5.7.1", "rejected", "no"),
 ("spf1@example.net", "550 5.7.23 Message rejected due to: SPF fail - not authorized. Please see http://www.openspf.net/Why?s=mfrom;id=app@example.org;ip=192.0.2.1;r=mx.example.net", "data", "5.7.23", "authfailure", "no"),
 ("dmarc1@example.net", "550 5.7.1 Email rejected per DMARC policy for example.org", "data", "5.7.1", "authfailure", "no"),
 ("spam1@example.net", "550 5.7.1 Message rejected as spam by Content Filtering.", "data", "5.7.1", "spamdetected", "no"),
 ("spam2@example.net", "554 5.7.1 The message was rejected because it contains prohibited virus or spam content", "data", "5.7.1", "spamdetected", "no"),
 ("virus1@example.net", "554 5.7.0 Reject, id=12345-01 - INFECTED: Eicar-Signature", "data", "5.7.0", "virusdetected", "no"),
 ("big1@example.net", "552 5.3.4 Message size exceeds fixed limit", "data", "5.3.4", "mesgtoobig", "no"),
 ("big2@example.net", "552 5.2.3 Message exceeds maximum size", "data", "5.2.3", "mesgtoobig", "no"),
 ("relay1@example.net", "554 5.7.1 <relay1@example.net>: Relay access denied", "rcpt", "5.7.1", "norelaying", "no"),
 ("rate1@example.net", "450 4.7.1 <rate1@example.net>: Recipient address rejected: Too many recipients from this IP, try again later", "rcpt", "4.7.1", "speeding", "no"),
 ("rate2@example.net", "550 5.1.1 <rate2@example.net>: too many connections from 192.0.2.1, slow down", "rcpt", "5.1.1", "toomanyconn", "no"),
 ("rate3@example.net", "421 4.7.0 mx.example.net Error: too many connections from 192.0.2.1", "connect", "4.7.0", "toomanyconn", "no"),
 ("pref1@example.net", "550 5.1.1 <pref1@example.net>: Recipient address rejected: Message refused due to content filter settings of the recipient", "rcpt", "5.1.1", "filtered", "no"),
 ("dis1@example.net", "550 5.2.1 <dis1@example.net>: Recipient address rejected: Account disabled", "rcpt", "5.2.1", "suspend", "no"),
 ("dis2@example.net", "550 5.2.1 This mailbox has been suspended for inactivity", "rcpt", "5.2.1", "suspend", "no"),
 ("tls1@example.net", "530 5.7.0 Must issue a STARTTLS command first", "mail", "5.7.0", "securityerror", "no"),
 ("sys1@example.net", "451 4.3.0 Temporary lookup failure", "rcpt", "4.3.0", "systemerror", "no"),
 ("sys2@example.net", "554 5.3.0 Local configuration error", "data", "5.3.0", "systemerror", "no"),
 ("dd1@example.net", "550 5.1.1 User unknown", "data", "5.1.1", U, "no"),
]
for rc, diag, st, status, reason, supp in P:
    write(postfix(rc, diag, st, status), [(rc, reason, status, supp, "Postfix")])
# Postfix without DSN part (old setups), and delayed warnings
write(postfix("olduser@example.net", "550 5.1.1 <olduser@example.net>: Recipient address rejected: User unknown", "rcpt", "5.1.1", dsn=False), [("olduser@example.net", U, "5.1.1", "yes", "Postfix (no DSN)")])
write(postfix("slow1@example.net", "451 4.3.0 Temporary lookup failure, please try again", "rcpt", "4.3.0", action="delayed"), [("slow1@example.net", "expired", "4.3.0", "no", "Postfix delay")])
write(postfix("slow2@example.net", "450 4.1.1 <slow2@example.net>: Recipient address rejected: unverified address: Address verification in progress", "rcpt", "4.1.1", action="delayed"), [("slow2@example.net", "expired", "4.1.1", "no", "Postfix delay")])
# Postfix local / DNS texts
PL = [
 ("ghost@nxdomain.example.invalid", "Host or domain name not found. Name service error for name=nxdomain.example.invalid type=A: Host not found", "5.4.4", H, "yes"),
 ("tmp@servfail.example.net", "Host or domain name not found. Name service error for name=servfail.example.net type=MX: Host not found, try again", "4.4.3", "networkerror", "no"),
 ("nomx@nullmx.example.net", "Domain nullmx.example.net does not accept mail (nullMX)", "5.1.10", H, "yes"),
 ("conn@dead.example.net", "connect to mx.dead.example.net[198.51.100.99]:25: Connection timed out", "4.4.1", "networkerror", "no"),
 ("refused@dead.example.net", "connect to mx.dead.example.net[198.51.100.98]:25: Connection refused", "4.4.1", "networkerror", "no"),
 ("loop@example.net", "mail for example.net loops back to myself", "5.4.6", "systemerror", "no"),
 ("localuser@relay.example.org", "unknown user: \"localuser\"", "5.1.1", U, "yes"),
 ("expired@example.net", "delivery temporarily suspended: connect to mx.example.net[198.51.100.5]:25: Connection timed out", "4.4.1", "expired", "no"),
]
for rc, text, status, reason, supp in PL:
    write(postfix_local(rc, text, status), [(rc, reason, status, supp, "Postfix (local)")])

# ---------------- Exim ----------------
E = [
 ("ex1@example.net", "550 5.1.1 <ex1@example.net>: Recipient address rejected: User unknown in virtual mailbox table", "rcpt", U, "5.1.1", "yes"),
 ("ex2@example.net", "550 No Such User Here\"", "rcpt", U, "5.0.0", "yes"),
 ("ex3@example.net", "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address for typos or\n550-5.1.1 unnecessary spaces. Learn more at\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si - gsmtp", "rcpt", U, "5.1.1", "yes"),
 ("ex4@example.net", "553 5.1.8 <app@example.org>... Domain of sender address app@example.org does not exist", "mail", "rejected", "5.1.8", "no"),
 ("ex5@example.net", "550 5.7.1 Unauthenticated email is not accepted from this domain.", "data", "authfailure", "5.7.1", "no"),
 ("ex6@example.net", "550-5.7.1 [192.0.2.1] Our system has detected that this message is\n550 5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.", "data", "spamdetected", "5.7.1", "no"),
 ("ex7@example.net", "452 4.2.2 The email account that you tried to reach is over quota.", "rcpt", "mailboxfull", "4.2.2", "no"),
 ("ex8@example.net", "550 5.2.1 The email account that you tried to reach is disabled.", "rcpt", "suspend", "5.2.1", "no"),
 ("ex9@example.net", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using b.barracudacentral.org", "rcpt", "blocked", "5.7.1", "no"),
 ("ex10@example.net", "550 Administrative prohibition", "rcpt", "rejected", "5.0.0", "no"),
 ("ex11@example.net", "550 Verification failed for <app@example.org>\n550 Unrouteable address\n550 Sender verify failed", "rcpt", "rejected", "5.0.0", "no"),
 ("ex12@example.net", "550 5.1.1 <ex12@example.net> recipient rejected: 192.0.2.1 has sent too many messages this hour", "rcpt", "speeding", "5.1.1", "no"),
 ("ex13@example.net", "554 5.7.9 Message not accepted for policy reasons.  See https://postmaster.example.net/error-codes", "data", "policyviolation", "5.7.9", "no"),
 ("ex14@example.net", "550 Mailbox unavailable or access denied - <ex14@example.net>", "rcpt", U, "5.0.0", "no"),
 ("ex15@example.net", "550 <ex15@example.net>: invalid address", "rcpt", U, "5.0.0", "yes"),
]
for rc, diag, st, reason, status, supp in E:
    write(exim(rc, diag, st), [(rc, reason, status, supp, "Exim")])
for rc, diag, st, reason, status, supp in [
 ("exd1@example.net", "550 5.1.1 <exd1@example.net>: Recipient address rejected: User unknown", "rcpt", U, "5.1.1", "yes"),
 ("exd2@example.net", "550 5.1.1 <exd2@example.net> Refused due to recipient preferences", "rcpt", "filtered", "5.1.1", "no"),
 ("exd3@example.net", "550 5.1.7 Invalid sender domain example.org", "mail", "rejected", "5.1.7", "no"),
]:
    write(exim(rc, diag, st, status=status, dsn=True), [(rc, reason, status, supp, "Exim (DSN)")])
for rc, text, reason, supp in [
 ("exu1@nowhere.example.invalid", "Unrouteable address", H, "yes"),
 ("exu2@example.org", "Unknown user", U, "yes"),
 ("exu3@example.net", "retry timeout exceeded", "expired", "no"),
 ("exu4@example.net", "all relevant MX records point to non-existent hosts", H, "yes"),
 ("exu5@example.net", "all hosts for 'example.net' have been failing for a long time (and retry time not reached)", "expired", "no"),
 ("exu6@example.org", "mailbox is full: retry timeout exceeded", "mailboxfull", "no"),
]:
    write(exim_local(rc, text), [(rc, reason, "5.0.0", supp, "Exim (local)")])

# ---------------- Sendmail ----------------
S = [
 ("sm1@example.net", "550 5.1.1 <sm1@example.net>... User unknown", "rcpt", "5.1.1", U, "yes"),
 ("sm2@example.net", "550 5.1.1 <sm2@example.net>: Recipient address rejected: undeliverable address", "rcpt", "5.1.1", U, "yes"),
 ("sm3@example.net", "553 5.1.8 <app@example.org>... Domain of sender address app@example.org does not exist", "mail", "5.1.8", "rejected", "no"),
 ("sm4@example.net", "550 5.7.1 <sm4@example.net>... Relaying denied. Proper authentication required.", "rcpt", "5.7.1", "norelaying", "no"),
 ("sm5@example.net", "554 5.7.1 Rejected 192.0.2.1 found in dnsbl.example.net", "connect", "5.7.1", "blocked", "no"),
 ("sm6@example.net", "552 5.2.2 <sm6@example.net>... Mailbox full", "rcpt", "5.2.2", "mailboxfull", "no"),
 ("sm7@example.net", "550 5.7.1 Message content rejected", "data", "5.7.1", "contenterror", "no"),
 ("sm8@example.net", "451 4.4.1 reply: read error from mx.example.net.", "rcpt", "4.4.1", "networkerror", "no"),
]
for rc, diag, st, status, reason, supp in S:
    write(sendmail(rc, diag, st, status), [(rc, reason, status, supp, "Sendmail")])
# Sendmail's local host unknown (no remote dialogue)
body = ("The original message was received at %s\nfrom localhost [127.0.0.1]\n\n   ----- The following addresses had permanent fatal errors -----\n<smh@gone.example.invalid>\n    (reason: 550 Host unknown)\n\n"
        "   ----- Transcript of session follows -----\n550 5.1.2 <smh@gone.example.invalid>... Host unknown (Name server: gone.example.invalid: host not found)\n") % DATE
d = "Reporting-MTA: dns; smtp.example.org\n\nFinal-Recipient: RFC822; smh@gone.example.invalid\nAction: failed\nStatus: 5.1.2\nLast-Attempt-Date: %s\n" % DATE
write(report("Mail Delivery Subsystem <MAILER-DAEMON@smtp.example.org>", "Returned mail: see transcript for details", body, d, "smh@gone.example.invalid"),
      [("smh@gone.example.invalid", H, "5.1.2", "yes", "Sendmail")])
# Sendmail two recipients, one unknown, one deferred by a block
body = ("The original message was received at %s\nfrom localhost [127.0.0.1]\n\n   ----- The following addresses had permanent fatal errors -----\n<a.gone@example.net>\n    (reason: 550 5.1.1 <a.gone@example.net>... User unknown)\n<b.ok@example.com.invalid>\n    (reason: 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked)\n\n"
        "   ----- Transcript of session follows -----\n... while talking to mx.example.net.:\n>>> RCPT To:<a.gone@example.net>\n<<< 550 5.1.1 <a.gone@example.net>... User unknown\n550 5.1.1 <a.gone@example.net>... User unknown\n"
        "... while talking to mx.example.com.invalid.:\n>>> RCPT To:<b.ok@example.com.invalid>\n<<< 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked\n554 5.7.1 <b.ok@example.com.invalid>... Service unavailable\n") % DATE
d = ("Reporting-MTA: dns; smtp.example.org\n\nFinal-Recipient: RFC822; a.gone@example.net\nAction: failed\nStatus: 5.1.1\nRemote-MTA: DNS; mx.example.net\nDiagnostic-Code: SMTP; 550 5.1.1 <a.gone@example.net>... User unknown\n\n"
     "Final-Recipient: RFC822; b.ok@example.com.invalid\nAction: failed\nStatus: 5.7.1\nRemote-MTA: DNS; mx.example.com.invalid\nDiagnostic-Code: SMTP; 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked\n")
write(report("Mail Delivery Subsystem <MAILER-DAEMON@smtp.example.org>", "Returned mail: see transcript for details", body, d, "a.gone@example.net"),
      [("a.gone@example.net", U, "5.1.1", "yes", "Sendmail (2 rcpts)"), ("b.ok@example.com.invalid", "blocked", "5.7.1", "no", "Sendmail (2 rcpts)")])

# ---------------- qmail ----------------
for rc, said, st, reason, supp in [
 ("q1@example.net", "550 5.1.1 <q1@example.net>... User unknown", "rcpt", U, "yes"),
 ("q2@example.net", "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", "rcpt", "norelaying", "no"),
 ("q3@example.net", "553 sorry, your envelope sender has been denied (#5.7.1)", "mail", "rejected", "no"),
 ("q4@example.net", "554 5.7.1 Message rejected because of SPF policy", "data", "authfailure", "no"),
 ("q5@example.net", "511 sorry, no mailbox here by that name (#5.1.1 - chkuser)", "rcpt", U, "yes"),
 ("q6@example.net", "552 sorry, mailbox over quota (#5.2.2)", "rcpt", "mailboxfull", "no"),
 ("q7@example.net", "451 DNSBL: 192.0.2.1 listed in bl.example.net", "connect", "blocked", "no"),
]:
    write(qmail(rc, said, st), [(rc, reason, "5.0.0", supp, "qmail")])
for rc, text, reason, supp in [
 ("ql1@example.net", "Sorry, no mailbox here by that name. (#5.1.1)", U, "yes"),
 ("ql2@example.net", "The users mailfolder is over the allowed quota (size). (#5.2.2)", "mailboxfull", "no"),
 ("ql3@nowhere.example.invalid", "Sorry, I couldn't find any host named nowhere.example.invalid. (#5.1.2)", H, "yes"),
 ("ql4@example.net", "Sorry, I couldn't find any host by that name. (#4.1.2)", "networkerror", "no"),
 ("ql5@example.net", "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)", "networkerror", "no"),
 ("ql6@example.net", "This address no longer accepts mail.", U, "yes"),
]:
    write(qmail_local(rc, text), [(rc, reason, "5.0.0", supp, "qmail (local)")])

# ---------------- Exchange / Office 365 ----------------
for rc, diag, status, reason, supp in [
 ("o1@example.net", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient o1@example.net not found by SMTP address lookup", "5.1.10", U, "yes"),
 ("o2@example.net", "550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found", "5.1.1", U, "yes"),
 ("o3@example.net", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [AM0PR00MB0001.eurprd00.prod.outlook.com]", "5.4.1", U, "yes"),
 ("o4@example.net", "550 5.7.1 RESOLVER.RST.AuthRequired; authentication required [Stage: CreateMessage]", "5.7.1", "rejected", "no"),
 ("o5@example.net", "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653 AS(7230)", "5.7.708", "blocked", "no"),
 ("o6@example.net", "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653 AS(750)", "5.7.750", "blocked", "no"),
 ("o7@example.net", "550 5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal from this list please visit https://sender.office.com/ and follow the directions.", "5.7.606", "blocked", "no"),
 ("o8@example.net", "552 5.2.2 STOREDRV.Deliver; mailbox full", "5.2.2", "mailboxfull", "no"),
 ("o9@example.net", "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded", "5.2.2", "mailboxfull", "no"),
 ("o10@example.net", "550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized", "5.7.1", "rejected", "no"),
 ("o11@example.net", "550 5.7.509 Access denied, sending domain example.org does not pass DMARC verification and has a DMARC policy of reject.", "5.7.509", "authfailure", "no"),
 ("o12@example.net", "550 5.4.1 Relay Access Denied ATTR35 [DM6NAM00FT001.eop-nam00.prod.protection.outlook.com]", "5.4.1", "norelaying", "no"),
 ("o13@example.net", "554 5.4.14 Hop count exceeded - possible mail loop ATTR34", "5.4.14", "systemerror", "no"),
 ("o14@example.net", "550 5.1.8 Access denied, bad outbound sender AS(42)", "5.1.8", "rejected", "no"),
 ("o15@example.net", "550 5.7.520 Access denied, Your organization does not allow external forwarding.", "5.7.520", "rejected", "no"),
 ("o16@example.net", "550 5.4.310 DNS domain example.net does not exist [Message=InfoDomainNonexistent] [LastAttemptedServerName=example.net]", "5.4.310", H, "yes"),
 ("o17@example.net", "550 5.4.316 Message expired, connection refused(Socket error code 10061)", "5.4.316", "expired", "no"),
 ("o18@example.net", "550 5.2.1 Mailbox cannot be accessed [Hostname=AM0PR00MB0001]", "5.2.1", "suspend", "no"),
]:
    write(exchange(rc, diag, status), [(rc, reason, status, supp, "Office365")])
for rc, diag, status, reason, supp in [
 ("x1@example.net", "550 5.1.1 User unknown", "5.1.1", U, "yes"),
 ("x2@example.net", "550 5.7.1 Unable to relay", "5.7.1", "norelaying", "no"),
 ("x3@example.net", "554 5.7.1 Your message could not be delivered because of content restrictions", "5.7.1", "contenterror", "no"),
]:
    write(exchange_relay(rc, diag, status), [(rc, reason, status, supp, "Exchange2013 (relay)")])
# Exchange 2003 style, no DSN
body = ("Your message\n\n  To:      x5@example.net\n  Subject: %s\n  Sent:    %s\n\ndid not reach the following recipient(s):\n\n"
        "x5@example.net on %s\n    The e-mail account does not exist at the organization this message was sent to.  Check the e-mail address, or contact the recipient directly to find out the correct address.\n"
        "    <exch.example.net #5.1.1>\n") % (SUBJ, DATE, DATE)
write(plain("System Administrator <postmaster@example.net>", "Undeliverable: " + SUBJ, body), [("x5@example.net", U, "5.1.1", "yes", "Exchange2003")])
body = ("Your message\n\n  To:      x6@example.net\n  Subject: %s\n\ndid not reach the following recipient(s):\n\n"
        "x6@example.net on %s\n    The recipient's mailbox is full and can't accept messages now.\n    <exch.example.net #5.2.2>\n") % (SUBJ, DATE)
write(plain("System Administrator <postmaster@example.net>", "Undeliverable: " + SUBJ, body), [("x6@example.net", "mailboxfull", "5.2.2", "no", "Exchange2003")])

# ---------------- Gmail as sender's MTA ----------------
for rc, diag, status, reason, supp, title, lead in [
 ("g1@example.net", "550 5.1.1 <g1@example.net>: Recipient address rejected: User unknown in virtual mailbox table", "5.1.1", U, "yes", None, None),
 ("g2@example.net", "550 5.7.1 Service unavailable, Client host [209.85.220.41] blocked using Spamhaus", "5.7.1", "blocked", "no", "Message blocked", "Your message to g2@example.net has been blocked. See technical details below for more information."),
 ("g3@nx.example.invalid", "DNS Error: DNS type 'mx' lookup of nx.example.invalid responded with code NXDOMAIN Domain name not found: nx.example.invalid", "5.1.2", H, "yes", "Address not found", "Your message wasn't delivered to g3@nx.example.invalid because the domain nx.example.invalid couldn't be found. Check for typos or unnecessary spaces and try again."),
 ("g4@example.net", "DNS Error: DNS type 'mx' lookup of example.net responded with code SERVFAIL", "4.4.3", "networkerror", "no", "Message not delivered", "There was a temporary problem delivering your message to g4@example.net. Gmail will retry for 47 more hours. You'll be notified if the delivery fails permanently."),
 ("g5@example.net", "552 5.2.2 Mailbox full", "5.2.2", "mailboxfull", "no", "Message not delivered", "Your message couldn't be delivered to g5@example.net because the remote server's mailbox is full."),
 ("g6@example.net", "The recipient server did not accept our requests to connect. Learn more at https://support.google.com/mail/answer/7720 [mx.example.net 198.51.100.3: timed out]", "4.4.1", "expired", "no", "Message not delivered", "Your message couldn't be delivered to g6@example.net. Gmail tried but the recipient server did not accept our requests to connect."),
]:
    write(gmail(rc, diag, status, title or "Address not found", lead), [(rc, reason, status, supp, "Gmail")])

# ---------------- Courier ----------------
for rc, diag, st, status, reason, supp in [
 ("c1@example.net", "550 5.1.1 <c1@example.net>... User unknown", "rcpt", "5.1.1", U, "yes"),
 ("c2@example.net", "511 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1", "mail", "5.0.0", "blocked", "no"),
 ("c3@example.net", "554 Rejected: message looks like spam", "data", "5.0.0", "spamdetected", "no"),
]:
    write(courier(rc, diag, st, status), [(rc, reason, status, supp, "Courier")])

# ---------------- Amazon SES JSON ----------------
for rc, bt, sub, status, diag, reason, supp, action in [
 ("s1@example.net", "Permanent", "General", "5.1.1", "smtp; 550 5.1.1 user unknown", U, "yes", "failed"),
 ("s2@example.net", "Permanent", "NoEmail", "5.1.1", "smtp; 550 5.1.1 <s2@example.net>: Recipient address rejected: User unknown in relay recipient table", U, "yes", "failed"),
 ("s3@example.net", "Transient", "MailboxFull", "5.2.2", "smtp; 552 5.2.2 Mailbox full", "mailboxfull", "no", "failed"),
 ("s4@example.net", "Permanent", "Suppressed", "5.1.1", "Amazon SES has suppressed sending to this address because it has a recent history of bouncing as an invalid address.", "suppressed", "no", "failed"),
 ("s5@example.net", "Transient", "General", "4.4.7", "smtp; 421 4.4.7 Message expired: unable to deliver in 840 minutes.<421 4.4.0 Unable to lookup DNS for example.net>", "expired", "no", "failed"),
 ("s6@example.net", "Permanent", "General", "5.7.1", "smtp; 550 5.7.1 Message rejected due to content restrictions", "contenterror", "no", "failed"),
 ("s7@example.net", "Transient", "ContentRejected", "5.3.0", "smtp; 554 5.3.0 message rejected by spam filter", "spamdetected", "no", "failed"),
 ("s8@example.net", "Undetermined", "Undetermined", "5.0.0", "smtp; 550 5.0.0 Delivery failed", "systemerror", "no", "failed"),
]:
    write(ses(rc, bt, sub, status, diag, action), [(rc, reason, status, supp, "AmazonSES (JSON)")])

# ---------------- Domino / Notes ----------------
for rc, because, reason, supp in [
 ("d1@example.net", "User d1@example.net (d1@example.net) not listed in Domino Directory", U, "yes"),
 ("d2@example.net", "Unable to deliver message to d2@example.net: mail file is full. Quota exceeded", "mailboxfull", "no"),
 ("d3@example.net", "Router: The message cannot be delivered because the server could not be found", "networkerror", "no"),
]:
    write(domino(rc, because), [(rc, reason, "5.0.0", supp, "Domino")])

# ---------------- Others: text bounces of various MTAs ----------------
write(generic_text("postmaster@mail.example.net", "Undeliverable Mail",
    "Failed to deliver to '<md1@example.net>'\nSMTP module(domain example.net) reports:\n mx.example.net gives an error: 550 5.1.1 <md1@example.net>... No such user\n",
    ), [("md1@example.net", U, "5.1.1", "yes", "MDaemon")])
write(generic_text("MAILER-DAEMON@mail.example.net", "Delivery Status Notification (Failure)",
    "Your message did not reach some or all of the intended recipients.\n\n   Subject:\t%s\n   Sent:\t%s\n\nThe following recipient(s) cannot be reached:\n\n      hm1@example.net\n         Server error: '550 Unknown user'\n" % (SUBJ, DATE)),
    [("hm1@example.net", U, "5.0.0", "yes", "hMailServer")])
write(generic_text("Mail Delivery System <MAILER-DAEMON@mail.example.net>", "Undelivered Mail",
    "Your message was not delivered to the following recipients:\n\nk1@example.net: Recipient address rejected: mailbox is full (quota exceeded)\n"),
    [("k1@example.net", "mailboxfull", "5.2.2", "no", "Kerio")])
write(generic_text("postmaster@example.net", "Message status - undeliverable",
    "The message that you sent was undeliverable to the following:\n\tgw1@example.net (user not found)\n\nPossibly truncated original message follows:\n\n" + ORIG.replace("{rcpt}", "gw1@example.net")),
    [("gw1@example.net", U, "5.0.0", "yes", "GroupWise")])
write(generic_text("Mail Delivery Subsystem <mailer-daemon@mx.example.net>", "Undeliverable: " + SUBJ,
    "The following message to <pp1@example.net> was undeliverable.\nThe reason for the problem:\n5.1.0 - Unknown address error 550-'5.1.1 <pp1@example.net>: Recipient address rejected: User unknown in virtual mailbox table'\n"),
    [("pp1@example.net", U, "5.1.1", "yes", "Proofpoint")])
write(generic_text("Mail Delivery Subsystem <mailer-daemon@mx.example.net>", "Undeliverable: " + SUBJ,
    "The following message to <pp2@example.net> was undeliverable.\nThe reason for the problem:\n5.3.0 - Other mail system problem 554-'5.7.1 Message blocked due to spam content in the message.'\n"),
    [("pp2@example.net", "spamdetected", "5.7.1", "no", "Proofpoint")])
write(generic_text("postmaster@example.net", "Mimecast Undeliverable Message",
    "Your message couldn't be delivered to the following recipients:\n\nmc1@example.net\n\nReason: 550 Rejected by header based Anti-Spoofing policy: app@example.org - https://community.mimecast.com/docs/DOC-1369#550\n"),
    [("mc1@example.net", "policyviolation", "5.0.0", "no", "Mimecast")])
write(generic_text("postmaster@example.net", "Mimecast Undeliverable Message",
    "Your message couldn't be delivered to the following recipients:\n\nmc2@example.net\n\nReason: 550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550\n"),
    [("mc2@example.net", U, "5.0.0", "yes", "Mimecast")])
write(generic_text("Barracuda <postmaster@example.net>", "Message you sent blocked by our bulk email filter",
    "Your message to: bc1@example.net\nwas blocked by our Spam Firewall. The email you sent with the following subject has NOT BEEN DELIVERED:\n\nSubject: %s\n\nReason: Message content rejected\n" % SUBJ),
    [("bc1@example.net", "spamdetected", "5.0.0", "no", "Barracuda")])
write(generic_text("Mail Delivery System <MAILER-DAEMON@mx.example.net>", "Delivery Status Notification (Failure)",
    "The following recipient(s) could not be reached:\n\n  ip1@example.net\n    Error Type: SMTP\n    Remote server (198.51.100.30) issued an error.\n    hop count exceeded - possible mail loop\n\n" ),
    [("ip1@example.net", "systemerror", "5.0.0", "no", "IronPort")])
write(generic_text("Mail Delivery System <MAILER-DAEMON@mx.example.net>", "Delivery Status Notification (Failure)",
    "The following recipient(s) could not be reached:\n\n  ip2@example.net\n    Error Type: SMTP\n    Remote server (198.51.100.30) issued an error.\n    550 5.1.1 <ip2@example.net>... User unknown\n"),
    [("ip2@example.net", U, "5.1.1", "yes", "IronPort")])
write(generic_text("MAILER-DAEMON@zimbra.example.net", "Undelivered Mail Returned to Sender",
    "Your message could not be delivered.\n\n<zm1@example.net>: host mail.example.net[198.51.100.12] said: 550 5.1.1 <zm1@example.net>: Recipient address rejected: example.net (in reply to RCPT TO command)\n"),
    [("zm1@example.net", U, "5.1.1", "yes", "Zimbra")])
# Yahoo, AOL, iCloud, GMX, Mail.ru, Yandex, Zoho as reporting MTAs (DSN)
for frm, rc, diag, status, reason, supp, mta in [
 ("MAILER-DAEMON@yahoo.com", "y1@example.net", "550 5.1.1 <y1@example.net>: Recipient address rejected: User unknown", "5.1.1", U, "yes", "Yahoo"),
 ("MAILER-DAEMON@yahoo.com", "y2@example.net", "554 5.7.1 <y2@example.net>: Relay access denied", "5.7.1", "norelaying", "no", "Yahoo"),
 ("mailer-daemon@gmx.net", "gm1@example.net", "550 Requested action not taken: mailbox unavailable", "5.0.0", U, "no", "GMX"),
 ("mailer-daemon@gmx.net", "gm2@example.net", "552-Requested mail action aborted: exceeded storage allocation", "5.2.2", "mailboxfull", "no", "GMX"),
 ("mailer-daemon@corp.mail.ru", "mr1@example.net", "550 Message was not accepted -- invalid mailbox.  Local mailbox mr1@example.net is unavailable: user not found", "5.0.0", U, "yes", "MailRu"),
 ("mailer-daemon@yandex.ru", "ya1@example.net", "550 5.7.1 No such user!", "5.7.1", U, "yes", "Yandex"),
 ("mailer-daemon@yandex.ru", "ya2@example.net", "554 5.7.1 [2] Message rejected under suspicion of SPAM; https://ya.cc/1IrBc", "5.7.1", "spamdetected", "no", "Yandex"),
 ("mailer-daemon@zoho.com", "z1@example.net", "550 5.1.1 Invalid Address", "5.1.1", U, "yes", "Zoho"),
 ("postmaster@icloud.com", "ic1@example.net", "554 5.7.1 [CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137", "5.7.1", "policyviolation", "no", "iCloud"),
]:
    h = "Sorry, we were unable to deliver your message to the following address.\n\n<%s>:\nRemote host said: %s\n" % (rc, diag)
    d = dsn_part(frm.split("@")[1], [dict(rcpt=rc, status=status, diag=diag)])
    write(report(frm, "Failure Notice", h, d, rc), [(rc, reason, status, supp, mta)])
# Yahoo old text format
write(generic_text("MAILER-DAEMON@yahoo.com", "Failure Notice",
    "Sorry, we were unable to deliver your message to the following address.\n\n<y3@example.net>:\n554: delivery error: dd Not a valid recipient - atlas100.example.net\n\n--- Below this line is a copy of the message.\n\n" + ORIG.replace("{rcpt}", "y3@example.net")),
    [("y3@example.net", U, "5.0.0", "yes", "Yahoo (text)")])
write(generic_text("MAILER-DAEMON@yahoo.com", "Failure Notice",
    "Sorry, we were unable to deliver your message to the following address.\n\n<y4@example.net>:\nRemote host said: 452 mailbox full [RCPT_TO]\n\n--- Below this line is a copy of the message.\n\n" + ORIG.replace("{rcpt}", "y4@example.net")),
    [("y4@example.net", "mailboxfull", "4.2.2", "no", "Yahoo (text)")])
# Google Groups
write(generic_text("Mail Delivery Subsystem <mailer-daemon@googlemail.com>", "Delivery Status Notification (Failure)",
    "Hello app@example.org,\n\nWe're writing to let you know that the group you tried to contact (team) may not exist, or you may not have permission to post messages to the group. A few more details on why you weren't able to post:\n\n * You might have spelled or formatted the group name incorrectly.\n * The owner of the group may have removed this group.\n * You may need to join the group before receiving permission to post.\n * This group may not be open to posting.\n\nIf you have questions related to this or any other Google Group, visit the Help Center at https://groups.google.com/support/.\n\nThanks,\n\nGoogle Groups\n", "X-Failed-Recipients: team@example.net\n"),
    [("team@example.net", "rejected", "5.0.0", "no", "Google Groups")])
# Quoted bounce inside a forward
write(generic_text("Alice <alice@example.org>", "Fwd: Undelivered Mail Returned to Sender",
    "Any idea why this bounced?\n\n---------- Forwarded message ----------\nFrom: MAILER-DAEMON@relay.example.org\nSubject: Undelivered Mail Returned to Sender\n\n> This is the mail system at host relay.example.org.\n>\n> <fw1@example.net>: host mx.example.net[192.0.2.25] said: 550 5.1.1\n>     <fw1@example.net>: Recipient address rejected: User unknown (in reply to\n>     RCPT TO command)\n"),
    [("fw1@example.net", U, "5.1.1", "yes", "Forwarded bounce (from a person)")])

# ---------------- not bounces ----------------
for frm, subj, hdr, body, mta in [
 ("Bob <bob@example.net>", "Out of Office: Your invoice", "Auto-Submitted: auto-replied\nX-Auto-Response-Suppress: All\n", "I am out of the office until Monday with limited access to e-mail.\nFor urgent matters please contact support@example.net.\n", "Exchange OOF"),
 ("Carol <carol@example.net>", "Automatic reply: Your invoice", "X-Auto-Response-Suppress: All\nAuto-Submitted: auto-generated\n", "Thank you for your message. I'm on vacation and will reply when I return.\n", "Outlook auto-reply"),
 ("dave@example.net", "Re: Your invoice [vacation]", "Precedence: bulk\nAuto-Submitted: auto-replied (vacation)\n", "I'm away until the 14th. Your mail regarding \"Your invoice\" will be read when I return.\n", "vacation(1)"),
 ("Erin <erin@example.net>", "Absence: Your invoice", "Auto-Submitted: auto-replied\n", "Je suis absente du bureau jusqu'au 15 decembre. Message non delivre a mes collegues.\n", "French auto-reply"),
 ("Frank <frank@example.net>", "Please confirm your message", "Auto-Submitted: auto-replied\nPrecedence: bulk\n", "Hi, I use a challenge-response spam filter. Your message to frank@example.net has been held. To have it delivered, please click the link below to confirm you are a real person:\nhttps://cr.example.net/confirm?id=abc\n", "Challenge-response"),
 ("Support <support@example.net>", "[#12345] Re: Your invoice", "Auto-Submitted: auto-generated\n", "Thank you for contacting support. We have received your request and a ticket has been opened. The mailbox support@example.net is not monitored for replies.\n", "Helpdesk auto-ack"),
]:
    write(plain(frm, subj, body, hdr), [(frm.split("<")[-1].rstrip(">"), "vacation", "", "no", mta)])
# A successful DSN
d = dsn_part("relay.example.org", [dict(rcpt="okay@example.net", status="2.0.0", rmta="mx.example.net", diag="250 2.0.0 OK 1712345 queued", action="delivered")])
write(report("MAILER-DAEMON@relay.example.org (Mail Delivery System)", "Successful Mail Delivery Report", "This is the mail system at host relay.example.org.\n\nYour message was successfully delivered to the destination(s)\nlisted below.\n\n<okay@example.net>: delivery via mx.example.net[192.0.2.25]:25: 250 2.0.0 OK\n", d, "okay@example.net"),
      [("okay@example.net", "delivered", "2.0.0", "no", "Postfix (success DSN)")])


# ---------------- second batch: harder shapes ----------------
# Postfix, two recipients at two hosts: one unknown, one full.
human = ("This is the mail system at host relay.example.org.\n\nI'm sorry to have to inform you that your message could not\n"
         "be delivered to one or more recipients. It's attached below.\n\n                   The mail system\n\n"
         "<m.gone@example.net>: host mx.example.net[192.0.2.25] said: 550 5.1.1\n    <m.gone@example.net>: Recipient address rejected: User unknown in virtual\n    mailbox table (in reply to RCPT TO command)\n\n"
         "<m.full@example.com.invalid>: host mx.example.com.invalid[198.51.100.8] said: 552 5.2.2\n    <m.full@example.com.invalid>: Mailbox full (in reply to RCPT TO command)\n")
d = dsn_part("relay.example.org", [dict(rcpt="m.gone@example.net", status="5.1.1", rmta="mx.example.net", diag="550 5.1.1 <m.gone@example.net>: Recipient address rejected: User unknown in virtual mailbox table"),
                                    dict(rcpt="m.full@example.com.invalid", status="5.2.2", rmta="mx.example.com.invalid", diag="552 5.2.2 <m.full@example.com.invalid>: Mailbox full")])
write(report("MAILER-DAEMON@relay.example.org (Mail Delivery System)", "Undelivered Mail Returned to Sender", human, d, "m.gone@example.net"),
      [("m.gone@example.net", U, "5.1.1", "yes", "Postfix (2 rcpts)"), ("m.full@example.com.invalid", "mailboxfull", "5.2.2", "no", "Postfix (2 rcpts)")])
# Postfix, the reply to MAIL FROM names "user unknown" (about the sender).
write(postfix("mf1@example.net", "550 5.1.0 <app@example.org>: Sender address rejected: User unknown in local recipient table", "mail", "5.1.0"),
      [("mf1@example.net", "rejected", "5.1.0", "no", "Postfix")])
write(postfix("mf2@example.net", "550 5.7.1 User unknown", "mail", "5.7.1"), [("mf2@example.net", "rejected", "5.7.1", "no", "Postfix")])
# Postfix, the greeting refused: 554 with words that would read as unknown.
write(postfix("gr1@example.net", "554 5.7.1 mx.example.net ESMTP not accepting messages from unknown hosts", "connect", "5.7.1"), [("gr1@example.net", "blocked", "5.7.1", "no", "Postfix")])
# DSN without Diagnostic-Code: the Status alone, per recipient.
d = "Reporting-MTA: dns; mta.example.org\n\nFinal-Recipient: rfc822; st1@example.net\nAction: failed\nStatus: 5.1.1\n"
write(report("MAILER-DAEMON@mta.example.org", "Delivery Status Notification (Failure)", "Delivery to the following recipient failed permanently:\n\n     st1@example.net\n", d, "st1@example.net"),
      [("st1@example.net", U, "5.1.1", "yes", "RFC3464 DSN (status only)")])
# DSN 5.1.1 whose text names a block: the words win.
d = "Reporting-MTA: dns; mta.example.org\n\nFinal-Recipient: rfc822; st2@example.net\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 Message from 192.0.2.1 blocked: listed at bl.example.net\n"
write(report("MAILER-DAEMON@mta.example.org", "Delivery Status Notification (Failure)", "Delivery to the following recipient failed permanently:\n\n     st2@example.net\n", d, "st2@example.net"),
      [("st2@example.net", "blocked", "5.1.1", "no", "RFC3464 DSN")])
# DSN 5.0.0 whose text says user unknown, per recipient.
d = "Reporting-MTA: dns; mta.example.org\n\nFinal-Recipient: rfc822; st3@example.net\nAction: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 <st3@example.net>... User unknown\n"
write(report("MAILER-DAEMON@mta.example.org", "Delivery Status Notification (Failure)", "Delivery to the following recipient failed permanently:\n\n     st3@example.net\n", d, "st3@example.net"),
      [("st3@example.net", U, "5.0.0", "yes", "RFC3464 DSN")])
# DSN generic 5.0.0 with no words: doubt.
d = "Reporting-MTA: dns; mta.example.org\n\nFinal-Recipient: rfc822; st4@example.net\nAction: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 5.0.0 Requested action not taken\n"
write(report("MAILER-DAEMON@mta.example.org", "Delivery Status Notification (Failure)", "Delivery to the following recipient failed permanently:\n\n     st4@example.net\n", d, "st4@example.net"),
      [("st4@example.net", "systemerror", "5.0.0", "no", "RFC3464 DSN")])
# Original-Recipient differs from Final-Recipient (an alias expanded remotely).
d = "Reporting-MTA: dns; mta.example.org\n\nOriginal-Recipient: rfc822; alias@example.net\nFinal-Recipient: rfc822; real.person@example.net\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <real.person@example.net>: Recipient address rejected: User unknown\n"
write(report("MAILER-DAEMON@mta.example.org", "Delivery Status Notification (Failure)", "Delivery to the following recipient failed permanently:\n\n     real.person@example.net\n", d, "alias@example.net"),
      [("real.person@example.net", U, "5.1.1", "yes", "RFC3464 DSN (alias)")])
# Exchange 2007/2010 relay NDR (#550 ... ## form), HTML-free.
body = ("Delivery has failed to these recipients or groups:\n\nx7@example.net\nThe e-mail address you entered couldn't be found. Please check the recipient's e-mail address and try to resend the message. If the problem continues, please contact your helpdesk.\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: EXCH02.corp.example.org\n\nx7@example.net\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\n")
write(plain("postmaster@corp.example.org", "Undeliverable: " + SUBJ, body), [("x7@example.net", U, "5.1.1", "yes", "Exchange2007")])
body = ("Delivery has failed to these recipients or groups:\n\nx8@example.net\nYour message wasn't delivered because the recipient's e-mail provider rejected it.\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: EXCH02.corp.example.org\n\nx8@example.net\nmx.example.net #550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using dnsbl.example.net ##\n")
write(plain("postmaster@corp.example.org", "Undeliverable: " + SUBJ, body), [("x8@example.net", "blocked", "5.7.1", "no", "Exchange2007")])
# Office 365 HTML-only human part plus DSN.
html = ("<html><body><p><b><font color=\"#000066\" size=\"3\">Your message to <a href=\"mailto:o20@example.net\">o20@example.net</a> couldn't be delivered.</font></b></p>"
        "<p>o20 wasn't found at example.net.</p><p><b>Action Required</b></p><p>Recipient</p><p>Unknown To address</p>"
        "<pre>Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'</pre></body></html>\n")
b = "BOUNDARY.{N}.html"
text = ("From: Microsoft Outlook <postmaster@example.net>\nTo: <app@example.org>\nSubject: Undeliverable: %s\nDate: %s\nMIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"%s\"\n\n--%s\nContent-Type: multipart/alternative; boundary=\"alt-%s\"\n\n--alt-%s\nContent-Type: text/html; charset=us-ascii\n\n%s\n--alt-%s--\n\n"
        "--%s\nContent-Type: message/delivery-status\n\nReporting-MTA: dns;AM0PR00MB0001.eurprd00.prod.outlook.com\n\nFinal-Recipient: rfc822;o20@example.net\nAction: failed\nStatus: 5.1.10\nDiagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup\n\n--%s--\n") % (SUBJ, DATE, b, b, b, b, html, b, b, b)
write(text, [("o20@example.net", U, "5.1.10", "yes", "Office365 (HTML)")])
# Base64-encoded human part of a text bounce (qmail relayed through a gateway).
import base64
raw = "Hi. This is the qmail-send program at mail.example.org.\nI'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n<b64@example.net>:\n203.0.113.9 does not like recipient.\nRemote host said: 550 5.1.1 <b64@example.net>: Recipient address rejected: User unknown\nGiving up on 203.0.113.9.\n"
text = ("From: MAILER-DAEMON@mail.example.org\nTo: <app@example.org>\nSubject: failure notice\nDate: %s\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n%s\n") % (DATE, base64.encodebytes(raw.encode()).decode())
write(text, [("b64@example.net", U, "5.1.1", "yes", "qmail (base64)")])
# CRLF line endings, Exim.
write(exim("crlf@example.net", "550 5.1.1 <crlf@example.net>: Recipient address rejected: User unknown", "rcpt").replace("\n", "\r\n"), [("crlf@example.net", U, "5.1.1", "yes", "Exim (CRLF)")])
# Exim two recipients: one unknown at one host, one refused after MAIL FROM at another.
body = ("This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n"
        "  two.a@example.net\n    host mx.example.net [198.51.100.7]\n    SMTP error from remote mail server after RCPT TO:<two.a@example.net>:\n    550 5.1.1 <two.a@example.net>: Recipient address rejected: User unknown\n"
        "  two.b@example.com.invalid\n    host mx.example.com.invalid [198.51.100.9]\n    SMTP error from remote mail server after MAIL FROM:<app@example.org> SIZE=2048:\n    550 5.1.1 <app@example.org>: Sender address rejected: User unknown\n"
        "\n------ This is a copy of the message, including all the headers. ------\n\n") + ORIG.replace("{rcpt}", "two.a@example.net")
write(plain("Mail Delivery System <Mailer-Daemon@smtp.example.org>", "Mail delivery failed: returning message to sender", body, "X-Failed-Recipients: two.a@example.net, two.b@example.com.invalid\nAuto-Submitted: auto-replied\n"),
      [("two.a@example.net", U, "5.1.1", "yes", "Exim (2 rcpts)"), ("two.b@example.com.invalid", "rejected", "5.1.1", "no", "Exim (2 rcpts)")])
# qmail, two recipients.
body = ("Hi. This is the qmail-send program at mail.example.org.\nI'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<qa@example.net>:\n203.0.113.9 does not like recipient.\nRemote host said: 550 5.1.1 <qa@example.net>... User unknown\nGiving up on 203.0.113.9.\n\n"
        "<qb@example.com.invalid>:\n198.51.100.77 failed after I sent the message.\nRemote host said: 554 5.7.1 Message rejected as spam\n\n--- Below this line is a copy of the message.\n\n") + ORIG.replace("{rcpt}", "qa@example.net")
write(plain("MAILER-DAEMON@mail.example.org", "failure notice", body), [("qa@example.net", U, "5.1.1", "yes", "qmail (2 rcpts)"), ("qb@example.com.invalid", "spamdetected", "5.7.1", "no", "qmail (2 rcpts)")])
# Sendmail, Host unknown for one of two recipients in different domains.
body = ("The original message was received at %s\nfrom localhost [127.0.0.1]\n\n   ----- The following addresses had permanent fatal errors -----\n<h.a@gone.example.invalid>\n    (reason: 550 Host unknown)\n<h.b@example.net>\n    (reason: 552 5.2.2 Mailbox full)\n\n"
        "   ----- Transcript of session follows -----\n550 5.1.2 <h.a@gone.example.invalid>... Host unknown (Name server: gone.example.invalid: host not found)\n... while talking to mx.example.net.:\n>>> RCPT To:<h.b@example.net>\n<<< 552 5.2.2 <h.b@example.net>... Mailbox full\n552 5.2.2 <h.b@example.net>... Mailbox full\n") % DATE
d = ("Reporting-MTA: dns; smtp.example.org\n\nFinal-Recipient: RFC822; h.a@gone.example.invalid\nAction: failed\nStatus: 5.1.2\n\n"
     "Final-Recipient: RFC822; h.b@example.net\nAction: failed\nStatus: 5.2.2\nRemote-MTA: DNS; mx.example.net\nDiagnostic-Code: SMTP; 552 5.2.2 <h.b@example.net>... Mailbox full\n")
write(report("Mail Delivery Subsystem <MAILER-DAEMON@smtp.example.org>", "Returned mail: see transcript for details", body, d, "h.a@gone.example.invalid"),
      [("h.a@gone.example.invalid", H, "5.1.2", "yes", "Sendmail (2 rcpts)"), ("h.b@example.net", "mailboxfull", "5.2.2", "no", "Sendmail (2 rcpts)")])
# Sendmail, name server timeout (transient).
body = ("The original message was received at %s\nfrom localhost [127.0.0.1]\n\n   ----- The following addresses had permanent fatal errors -----\n<ns@slow.example.net>\n    (reason: Name server timeout)\n\n"
        "   ----- Transcript of session follows -----\n<ns@slow.example.net>... Deferred: Name server: slow.example.net.: host name lookup failure\nMessage could not be delivered for 5 days\nMessage will be deleted from queue\n") % DATE
d = "Reporting-MTA: dns; smtp.example.org\n\nFinal-Recipient: RFC822; ns@slow.example.net\nAction: failed\nStatus: 4.4.7\n"
write(report("Mail Delivery Subsystem <MAILER-DAEMON@smtp.example.org>", "Returned mail: see transcript for details", body, d, "ns@slow.example.net"),
      [("ns@slow.example.net", "expired", "4.4.7", "no", "Sendmail (expired)")])
# Postfix expired after 4xx greylisting.
write(postfix("gx@example.net", "450 4.7.1 <gx@example.net>: Recipient address rejected: Greylisted for 5 minutes", "rcpt", "4.7.1"), [("gx@example.net", "expired", "4.7.1", "no", "Postfix (expired)")])
# Gmail old text template ("The error that the other server returned was").
write(plain("Mail Delivery Subsystem <mailer-daemon@googlemail.com>", "Delivery Status Notification (Failure)",
    "Delivery to the following recipient failed permanently:\n\n     gold@example.net\n\nTechnical details of permanent failure:\nGoogle tried to deliver your message, but it was rejected by the server for the recipient domain example.net by mx.example.net. [198.51.100.3].\n\nThe error that the other server returned was:\n550 5.1.1 <gold@example.net>: Recipient address rejected: User unknown in virtual mailbox table\n"),
    [("gold@example.net", U, "5.1.1", "yes", "Gmail (old)")])
write(plain("Mail Delivery Subsystem <mailer-daemon@googlemail.com>", "Delivery Status Notification (Failure)",
    "Delivery to the following recipient failed permanently:\n\n     gold2@example.net\n\nTechnical details of permanent failure:\nGoogle tried to deliver your message, but it was rejected by the server for the recipient domain example.net by mx.example.net. [198.51.100.3].\n\nThe error that the other server returned was:\n550 5.7.1 Our system has detected an unusual rate of unsolicited mail originating from your IP address\n"),
    [("gold2@example.net", "blocked", "5.7.1", "no", "Gmail (old)")])
# German-language GMX/Web.de bounce.
write(plain("Mail Delivery System <mailer-daemon@gmx.net>", "Mail delivery failed: returning message to sender",
    "This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of\nits recipients. This is a permanent error. The following address\nfailed:\n\n\"de1@example.net\":\nSMTP error from remote server for RCPT TO command, host: mx.example.net (198.51.100.40) reason: 550 5.1.1 <de1@example.net>... Benutzer unbekannt\n"),
    [("de1@example.net", U, "5.1.1", "yes", "GMX")])
write(plain("Mail Delivery System <mailer-daemon@gmx.net>", "Mail delivery failed: returning message to sender",
    "This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of\nits recipients. This is a permanent error. The following address\nfailed:\n\n\"de2@example.net\":\nSMTP error from remote server for MAIL FROM command, host: mx.example.net (198.51.100.40) reason: 550 5.7.1 Sender unknown\n"),
    [("de2@example.net", "rejected", "5.7.1", "no", "GMX")])
# Verizon-style / vtext text bounce.
write(plain("post_master@vtext.example.net", "Undeliverable Message",
    "Message could not be delivered to mobile.\nError: No valid recipients for this MM\nRecipient: 5551234567@vtext.example.net\n"),
    [("5551234567@vtext.example.net", U, "5.0.0", "yes", "Verizon")])
# InterScan-style.
write(plain("InterScan MSS <postmaster@example.net>", "Mail could not be delivered",
    "******   Message from InterScan Messaging Security Suite   ******\n\nSent <<< RCPT TO:<is1@example.net>\nReceived >>> 550 5.1.1 <is1@example.net>... User unknown\n\nUnable to deliver message to <is1@example.net>.\n"),
    [("is1@example.net", U, "5.1.1", "yes", "InterScanMSS")])
# IMail-style.
write(plain("postmaster@mail.example.net", "Undeliverable Mail",
    "Unknown user: im1@example.net\n\nOriginal message follows.\n\n" + ORIG.replace("{rcpt}", "im1@example.net")),
    [("im1@example.net", U, "5.0.0", "yes", "IMail")])
# MessageLabs-style.
write(plain("MAILER-DAEMON@messagelabs.example.net", "Mail Delivery Failure",
    "This is an automatically generated Delivery Status Notification.\n\nDelivery to the following recipients failed.\n\n       ml1@example.net\n\nReason: 553-mail rejected because your IP is in the PBL. See http://www.spamhaus.org/pbl\n"),
    [("ml1@example.net", "blocked", "5.0.0", "no", "MessageLabs")])
# SES text notification sent as a bounce (email feedback forwarding).
d = "Reporting-MTA: dns; a2-3.smtp-out.eu-west-1.amazonses.com\n\nAction: failed\nFinal-Recipient: rfc822; sest@example.net\nDiagnostic-Code: smtp; 550 5.1.1 sest@example.net: Recipient address rejected: User unknown in relay recipient table\nStatus: 5.1.1\n"
write(report("MAILER-DAEMON@amazonses.com", "Delivery Status Notification (Failure)", "An error occurred while trying to deliver the mail to the following recipients:\nsest@example.net\n", d, "sest@example.net"),
      [("sest@example.net", U, "5.1.1", "yes", "AmazonSES (email feedback)")])

# ---------------- not bounces that use a bounce's words ----------------
for frm, subj, hdr, body, mta in [
 ("Gina <gina@example.net>", "Automatic reply: Your invoice", "X-Auto-Response-Suppress: All\n", "Hello, I have left the company and this mailbox is no longer monitored. Your message has not been forwarded. Please write to accounts@example.net instead.\n", "Outlook auto-reply (left the company)"),
 ("team-owner@example.net", "Your message to team awaits moderator approval", "Auto-Submitted: auto-generated\nPrecedence: bulk\n", "Your mail to 'team' with the subject\n\n    Your invoice\n\nIs being held until the list moderator can review it for approval.\n\nThe reason it is being held:\n\n    Post by non-member to a members-only list\n", "Mailman moderation"),
 ("noreply@example.net", "Re: Your invoice", "Auto-Submitted: auto-replied\n", "This is an unattended mailbox: replies to this address are not read and will not be delivered to a person. The recipient you wrote to does not exist as a human; please use the contact form.\n", "No-reply auto-answer"),
]:
    write(plain(frm, subj, body, hdr), [(frm.split("<")[-1].rstrip(">"), "vacation", "", "no", mta)])
# A delayed DSN whose status says user unknown (the MTA is still trying).
d = dsn_part("relay.example.org", [dict(rcpt="late@example.net", status="4.1.1", rmta="mx.example.net", diag="450 4.1.1 <late@example.net>: Recipient address rejected: User unknown in local recipient table", action="delayed")])
write(report("MAILER-DAEMON@relay.example.org (Mail Delivery System)", "Delayed Mail (still being retried)", "This is the mail system at host relay.example.org.\n\n# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n\n<late@example.net>: host mx.example.net[192.0.2.25] said: 450 4.1.1 <late@example.net>: Recipient address rejected: User unknown in local recipient table (in reply to RCPT TO command)\n", d, "late@example.net"),
      [("late@example.net", "expired", "4.1.1", "no", "Postfix delay")])

# ---------------- DNS outcomes as each MTA words them ----------------
for rc, text, reason, supp, mta in [
 ("dn1@nodata.example.net", "Host or domain name not found. Name service error for name=nodata.example.net type=AAAA: Host found but no data record of requested type", H, "yes", "Postfix (local)"),
 ("dn2@example.net", "conversation with mx.example.net[198.51.100.5] timed out while receiving the initial server greeting", "networkerror", "no", "Postfix (local)"),
 ("dn3@example.net", "lost connection with mx.example.net[198.51.100.5] while receiving the initial server greeting", "networkerror", "no", "Postfix (local)"),
]:
    write(postfix_local(rc, text, "5.4.4" if reason == H else "4.4.2"), [(rc, reason, "5.4.4" if reason == H else "4.4.2", supp, mta)])
write(qmail_local("dn4@nomx.example.net", "Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)"), [("dn4@nomx.example.net", H, "5.4.4", "yes", "qmail (local)")])
write(qmail_local("dn5@example.net", "CNAME lookup failed temporarily. (#4.4.3)\nI'm not going to try again; this message has been in the queue too long."), [("dn5@example.net", "expired", "4.4.3", "no", "qmail (local)")])
write(exim_local("dn6@example.net", "host lookup did not complete: retry timeout exceeded"), [("dn6@example.net", "expired", "5.0.0", "no", "Exim (local)")])
body = ("The original message was received at %s\nfrom localhost [127.0.0.1]\n\n   ----- The following addresses had permanent fatal errors -----\n<dn7@nodata.example.net>\n    (reason: 550 Host unknown)\n\n"
        "   ----- Transcript of session follows -----\n550 5.1.2 <dn7@nodata.example.net>... Host unknown (Name server: nodata.example.net: no data known)\n") % DATE
d = "Reporting-MTA: dns; smtp.example.org\n\nFinal-Recipient: RFC822; dn7@nodata.example.net\nAction: failed\nStatus: 5.1.2\n"
write(report("Mail Delivery Subsystem <MAILER-DAEMON@smtp.example.org>", "Returned mail: see transcript for details", body, d, "dn7@nodata.example.net"), [("dn7@nodata.example.net", H, "5.1.2", "yes", "Sendmail")])
write(exchange("dn8@gone.example.invalid", "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain", "5.4.4"), [("dn8@gone.example.invalid", H, "5.4.4", "yes", "Exchange2013")])
write(exchange("dn9@example.net", "451 4.4.0 DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain; nonexistent domain", "4.4.0"), [("dn9@example.net", "networkerror", "4.4.0", "no", "Exchange2013 (transient)")])
write(gmail("dn10@nodata.example.net", "DNS Error: DNS type 'mx' lookup of nodata.example.net responded with code NOERROR\nDNS type 'aaaa' lookup of nodata.example.net responded with code NOERROR\nDNS type 'a' lookup of nodata.example.net responded with code NOERROR\nThe domain nodata.example.net doesn't receive email according to the administrator: returned NULL MX", "5.1.10", "Address not found",
      "Your message wasn't delivered to dn10@nodata.example.net because the domain nodata.example.net couldn't be found."), [("dn10@nodata.example.net", H, "5.1.10", "yes", "Gmail")])
write(gmail("dn11@example.net", "DNS Error: DNS type 'mx' lookup of example.net responded with code SERVFAIL\nDNS type 'a' lookup of example.net responded with code SERVFAIL", "5.4.4", "Message not delivered",
      "Your message couldn't be delivered to dn11@example.net. Gmail tried for 48 hours but the domain example.net couldn't be resolved."), [("dn11@example.net", "networkerror", "5.4.4", "no", "Gmail")])

# ---------------- reports that are not failures ----------------
# A read receipt (RFC 8098 MDN): multipart/report, but a disposition, not a delivery status.
b = "MDN.{N}"
text = ("From: Hugo <hugo@example.net>\nTo: <app@example.org>\nSubject: Read: %s\nDate: %s\nMIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=disposition-notification; boundary=\"%s\"\n\n--%s\nContent-Type: text/plain\n\nYour message was displayed on %s.\n\n"
        "--%s\nContent-Type: message/disposition-notification\n\nReporting-UA: hugo-pc.example.net; Mail Client\nOriginal-Recipient: rfc822;hugo@example.net\nFinal-Recipient: rfc822;hugo@example.net\nOriginal-Message-ID: <inv-1@example.org>\nDisposition: manual-action/MDN-sent-manually; displayed\n\n--%s--\n") % (SUBJ, DATE, b, b, DATE, b, b)
write(text, [("hugo@example.net", "delivered", "", "no", "MDN (read receipt)")])
# Exchange "relayed" report.
d = "Reporting-MTA: dns;EXCH01.corp.example.org\n\nFinal-Recipient: rfc822;ivy@example.net\nAction: relayed\nStatus: 2.0.0\nRemote-MTA: dns;mx.example.net\n"
write(report("postmaster@corp.example.org", "Relayed: " + SUBJ, "Delivery to these recipients or groups is complete, but no delivery notification was sent by the destination server:\n\nivy@example.net\n", d, "ivy@example.net"),
      [("ivy@example.net", "delivered", "2.0.0", "no", "Exchange (relayed)")])

# ---------------- more MTAs' templates ----------------
def opensmtpd(rcpt, line, subj="Delivery status notification: error"):
    body = ("Hi!\n\nThis is the MAILER-DAEMON, please DO NOT REPLY to this e-mail.\n\n"
            "An error has occurred while attempting to deliver a message for\nthe following list of recipients:\n\n%s: %s\n\n"
            "Below is a copy of the original message:\n\n" % (rcpt, line)) + ORIG.replace("{rcpt}", rcpt)
    return plain("Mailer Daemon <MAILER-DAEMON@smtpd.example.org>", subj, body)
write(opensmtpd("os1@example.net", "550 5.1.1 <os1@example.net>: Recipient address rejected: User unknown in virtual mailbox table"), [("os1@example.net", U, "5.1.1", "yes", "OpenSMTPD")])
write(opensmtpd("os2@example.net", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"), [("os2@example.net", "blocked", "5.7.1", "no", "OpenSMTPD")])
write(opensmtpd("os3@gone.example.invalid", "Domain not found"), [("os3@gone.example.invalid", H, "5.0.0", "yes", "OpenSMTPD")])
write(opensmtpd("os4@example.net", "Network error on destination MXs"), [("os4@example.net", "networkerror", "5.0.0", "no", "OpenSMTPD")])
def msgserver(rcpt, reason, diag):
    body = ("This report relates to a message you sent with the following header fields:\n\n  Message-id: <inv-1@example.org>\n  Date: %s\n  From: app@example.org\n  To: %s\n  Subject: %s\n\n"
            "Your message cannot be delivered to the following recipients:\n\n  Recipient address: %s\n  Reason: %s\n  Diagnostic code: smtp;%s\n  Remote system: dns;mx.example.net (TCP|198.51.100.1|25|198.51.100.2|25) (mx.example.net ESMTP)\n") % (DATE, rcpt, SUBJ, rcpt, reason, diag)
    d = "Reporting-MTA: dns;ims.example.org (tcp_intranet-daemon)\n\nOriginal-recipient: rfc822;%s\nFinal-recipient: rfc822;%s\nAction: failed\nStatus: 5.0.0 (Remote SMTP server has rejected address)\nRemote-MTA: dns;mx.example.net\nDiagnostic-code: smtp;%s\n" % (rcpt, rcpt, diag)
    return report("Internet Mail Delivery <postmaster@ims.example.org>", "Delivery Notification: Delivery has failed", body, d, rcpt)
write(msgserver("ms1@example.net", "Remote SMTP server has rejected address", "550 5.1.1 unknown or illegal alias: ms1@example.net"), [("ms1@example.net", U, "5.1.1", "yes", "MessagingServer")])
write(msgserver("ms2@example.net", "Remote SMTP server has rejected address", "550 5.7.1 Mail from 192.0.2.1 refused by blackhole site bl.example.net"), [("ms2@example.net", "blocked", "5.7.1", "no", "MessagingServer")])
write(plain("Content-filter at mx.example.net <postmaster@mx.example.net>", "Undeliverable mail, MTA-BLOCKED",
    "This nondelivery report was generated by the program amavisd-new at host\nmx.example.net. Our internal reference code for your message is 12345-01/abcd.\n\n"
    "UNDELIVERABLE MAIL\n\nYour message WAS NOT delivered to:\n  <am1@example.net>\nbecause:\n  554 5.7.0 Reject, id=12345-01 - spam\n"),
    [("am1@example.net", "spamdetected", "5.7.0", "no", "amavisd-new")])
write(plain("MAILER-DAEMON@dma.example.org", "Mail delivery failed",
    "This is the DragonFly Mail Agent v0.11 at dma.example.org.\n\nThere was an error delivering your mail to <dm1@example.net>.\n\nmx.example.net [198.51.100.3] did not like our RCPT TO:\n550 5.1.1 <dm1@example.net>: Recipient address rejected: User unknown\n\nOriginal message follows.\n\n" + ORIG.replace("{rcpt}", "dm1@example.net")),
    [("dm1@example.net", U, "5.1.1", "yes", "DragonFly")])
d = "Reporting-MTA: dns; pmta.example.org\n\nFinal-Recipient: rfc822;pm1@example.net\nAction: failed\nStatus: 5.0.0 (undefined status)\nRemote-MTA: dns; 198.51.100.61 (198.51.100.61)\nDiagnostic-Code: smtp; 550 5.1.1 <pm1@example.net>: Recipient address rejected: User unknown in relay recipient table\nX-PowerMTA-BounceCategory: bad-mailbox\n"
write(report("Postmaster <postmaster@pmta.example.org>", "Delivery report", "The following recipient(s) could not be reached:\n\n  pm1@example.net\n", d, "pm1@example.net"), [("pm1@example.net", U, "5.1.1", "yes", "PowerMTA")])
d = "Reporting-MTA: dns; pmta.example.org\n\nFinal-Recipient: rfc822;pm2@example.net\nAction: failed\nStatus: 5.0.0 (undefined status)\nRemote-MTA: dns; 198.51.100.61 (198.51.100.61)\nDiagnostic-Code: smtp; 550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked by policy\nX-PowerMTA-BounceCategory: policy-related\n"
write(report("Postmaster <postmaster@pmta.example.org>", "Delivery report", "The following recipient(s) could not be reached:\n\n  pm2@example.net\n", d, "pm2@example.net"), [("pm2@example.net", "blocked", "5.7.1", "no", "PowerMTA")])

# ---------------- old Sendmail (no DSN part), two recipients ----------------
body = ("   ----- Transcript of session follows -----\n550 <v5a@gone.example.invalid>... Host unknown (Name server: gone.example.invalid: host not found)\n"
        "... while talking to mx.example.net.:\n>>> RCPT To:<v5b@example.net>\n<<< 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using bl.example.net\n554 <v5b@example.net>... Service unavailable\n\n"
        "   ----- Unsent message follows -----\n") + ORIG.replace("{rcpt}", "v5a@gone.example.invalid, v5b@example.net")
write(plain("Mail Delivery Subsystem <MAILER-DAEMON@smtp.example.org>", "Returned mail: Host unknown (Name server: gone.example.invalid: host not found)", body),
      [("v5a@gone.example.invalid", H, "5.0.0", "yes", "V5sendmail (2 rcpts)"), ("v5b@example.net", "blocked", "5.7.1", "no", "V5sendmail (2 rcpts)")])
body = ("   ----- Transcript of session follows -----\n... while talking to mx.example.net.:\n>>> RCPT To:<v5c@example.net>\n<<< 550 <v5c@example.net>... User unknown\n550 <v5c@example.net>... User unknown\n"
        ">>> RCPT To:<v5d@example.net>\n<<< 452 4.2.2 <v5d@example.net>... Mailbox full\n<v5d@example.net>... Deferred: 452 4.2.2 Mailbox full\n\n"
        "   ----- Unsent message follows -----\n") + ORIG.replace("{rcpt}", "v5c@example.net, v5d@example.net")
write(plain("Mail Delivery Subsystem <MAILER-DAEMON@smtp.example.org>", "Returned mail: User unknown", body),
      [("v5c@example.net", U, "5.0.0", "yes", "V5sendmail (2 rcpts)"), ("v5d@example.net", "mailboxfull", "4.2.2", "no", "V5sendmail (2 rcpts)")])

with open("expected.tsv", "w") as f:
    f.write("file\trecipient\treason\tstatus\tsuppress\tsource_mta\n")
    for r in rows:
        f.write("\t".join(r) + "\n")
print(n, "files,", len(rows), "rows")
