package bounce

import (
	"regexp"
	"strings"

	"facteur/policy"
)

// stagePhrases are the words each MTA uses to say which command a remote
// reply answered. They come from the MTAs' bounce templates, not from
// samples: Postfix's "(in reply to RCPT TO command)", Exim's "SMTP error
// from remote mail server after RCPT TO:<a>:", qmail's "does not like
// recipient" / "sender was rejected" / "failed after I sent the message",
// DragonFly's "did not like our RCPT TO:", Yahoo's "[RCPT_TO]", and
// Postfix's "refused to talk to me" for a greeting.
var stagePhrases = []stagePhrase{
	{regexp.MustCompile(`(?i)\[rcpt_to\]|in reply to rcpt to command|after rcpt to\b|after rcpt command|after pipelined rcpt|does not like recipient|did not like our rcpt|error in rcpt to|\bRCPT TO:?\s*<[^>]*>\s*\.{0,3}\s*(<<<\s*)?[45]\d\d\b`), policy.StageRcpt},
	{regexp.MustCompile(`(?i)\[mail_from\]|in reply to mail from command|after mail from\b|after mail command|after pipelined mail|sender was rejected|did not like our mail from|error in mail from`), policy.StageMail},
	{regexp.MustCompile(`(?i)in reply to (end of )?data command|after (end of )?data\b|after pipelined data|after data command|failed after i sent the message|did not like our data|error in data\b|after sending (the )?message (body|data)`), policy.StageData},
	{regexp.MustCompile(`(?i)refused to talk to me|in reply to (initial greeting|ehlo|helo|lhlo|starttls) command|after initial connection|after (ehlo|helo|lhlo|starttls)\b|greeting failed|my name was rejected|in reply to (the )?greeting`), policy.StageConnect},
}

// replyPhrases name the stage by what the reply says, not by the command,
// so they count only when no command is named: Postfix's smtpd says
// "Recipient address rejected" only to RCPT TO and "Sender address
// rejected" to MAIL FROM, or to RCPT TO when it delays its restrictions
// (smtpd_delay_reject): the reply is about the sender either way.
var replyPhrases = []stagePhrase{
	{regexp.MustCompile(`(?i)recipient address rejected`), policy.StageRcpt},
	{regexp.MustCompile(`(?i)sender address rejected`), policy.StageMail},
}

type stagePhrase struct {
	re    *regexp.Regexp
	stage policy.Stage
}

// earliest returns the stage of the phrase that comes first in text.
func earliest(text string, phrases []stagePhrase) policy.Stage {
	best, at := policy.StageUnknown, -1
	for _, p := range phrases {
		if loc := p.re.FindStringIndex(text); loc != nil && (at < 0 || loc[0] < at) {
			best, at = p.stage, loc[0]
		}
	}
	return best
}

var (
	// dialogueCmd and dialogueReply are the two sides of an SMTP dialogue
	// pasted into a bounce: Sendmail and Courier write ">>> RCPT
	// To:<a@b>" then "<<< 550 ...", InterScan writes "Sent <<< RCPT
	// TO:<a@b>" then "Received >>> 550 ...".
	dialogueCmd   = regexp.MustCompile(`(?i)(?:>>>|sent\s*<<<)\s*(ehlo|helo|lhlo|starttls|mail from|rcpt to|data|\.)(?:\W|$)`)
	dialogueReply = regexp.MustCompile(`(?i)(?:<<<|received\s*>>>)\s*([245])\d\d\b`)
)

// dialogueStage replays an SMTP dialogue in text and returns the stage of
// the command that got the first failing reply, or "".
func dialogueStage(text string) policy.Stage {
	cmds := dialogueCmd.FindAllStringSubmatchIndex(text, 50)
	if len(cmds) == 0 {
		return policy.StageUnknown
	}
	for _, r := range dialogueReply.FindAllStringSubmatchIndex(text, 50) {
		if text[r[2]] == '2' {
			continue
		}
		last := ""
		for _, c := range cmds {
			if c[0] < r[0] {
				last = strings.ToLower(text[c[2]:c[3]])
			}
		}
		switch last {
		case "mail from":
			return policy.StageMail
		case "rcpt to":
			return policy.StageRcpt
		case "data", ".":
			return policy.StageData
		case "ehlo", "helo", "lhlo", "starttls":
			return policy.StageConnect
		}
		return policy.StageUnknown
	}
	return policy.StageUnknown
}

// stageIn returns the stage a pasted dialogue shows, else the one the
// earliest phrase naming a command gives, else the one the reply's own
// words imply, or "".
func stageIn(text string) policy.Stage {
	if st := dialogueStage(text); st != policy.StageUnknown {
		return st
	}
	if st := earliest(text, stagePhrases); st != policy.StageUnknown {
		return st
	}
	return earliest(text, replyPhrases)
}

var (
	transcriptCmd   = regexp.MustCompile(`(?i)^\s*>>>\s*(\S+)(?:\s+(?:to|from):?\s*<?([^>\s]*)>?)?`)
	transcriptReply = regexp.MustCompile(`^\s*<<<\s*[45]\d\d\b`)
	talkingTo       = regexp.MustCompile(`(?i)^\s*while talking to\b`)
)

// refusedRcpts lists the addresses a transcript shows refused at RCPT: a
// failing "<<<" reply within three lines after ">>> RCPT To:<addr>". One
// pass over the text, whatever the number of recipients.
func refusedRcpts(lines []string) map[string]bool {
	out := map[string]bool{}
	for i, l := range lines {
		c := transcriptCmd.FindStringSubmatch(l)
		if c == nil || !strings.EqualFold(c[1], "RCPT") || c[2] == "" {
			continue
		}
		for j := i + 1; j < len(lines) && j <= i+3; j++ {
			if transcriptReply.MatchString(lines[j]) {
				out[strings.ToLower(c[2])] = true
				break
			}
			if transcriptCmd.MatchString(lines[j]) {
				break
			}
		}
	}
	return out
}

// cmdStage maps a transcript command to its stage.
func cmdStage(cmd, arg, addr string) policy.Stage {
	switch strings.ToUpper(cmd) {
	case "MAIL":
		return policy.StageMail
	case "RCPT":
		if strings.EqualFold(arg, addr) {
			return policy.StageRcpt
		}
	case "DATA", ".":
		return policy.StageData
	case "EHLO", "HELO", "LHLO", "STARTTLS":
		return policy.StageConnect
	}
	return policy.StageUnknown
}

// stageOf reads the stage of the recipient mentioned at m from an SMTP
// transcript (Sendmail's "While talking to HOST:" / ">>> CMD" / "<<< REPLY",
// Courier's and others' alike): a failing reply to ">>> RCPT To:<addr>" is
// at RCPT; a Sendmail recipient line without a reply of its own ("554
// <a@b>... Remote protocol error") takes the stage of the failing command
// of the transcript section it closes. "" when no transcript says.
func stageOf(lines []string, m mention, refused map[string]bool) policy.Stage {
	if refused[strings.ToLower(m.addr)] {
		return policy.StageRcpt
	}
	l := lines[m.line]
	if !sendmailLine.MatchString(l) {
		return policy.StageUnknown
	}
	_, rest, _ := strings.Cut(l, "...")
	if hasReply(rest) || hostUnknownText.MatchString(rest) || userUnknownText.MatchString(rest) || mailboxFullText.MatchString(rest) {
		// The line gives its own reason ("554 <a@b>... 550 Host unknown",
		// Sendmail's own "Host unknown (Name server: ...)"): it is not the
		// section's reply, which was only "Service unavailable" or
		// "Remote protocol error" for the addresses it concerned.
		return policy.StageUnknown
	}
	failed := policy.StageUnknown
	cmd, arg := "", ""
	for k := m.line - 1; k >= 0 && k > m.line-maxBlock && !blank(lines[k]); k-- {
		if talkingTo.MatchString(lines[k]) {
			// Replay the section forward to find the command that failed.
			for j := k + 1; j < m.line; j++ {
				if c := transcriptCmd.FindStringSubmatch(lines[j]); c != nil {
					cmd, arg = c[1], c[2]
				} else if transcriptReply.MatchString(lines[j]) && failed == "" {
					failed = cmdStage(cmd, arg, m.addr)
				}
			}
			return failed
		}
	}
	return policy.StageUnknown
}
