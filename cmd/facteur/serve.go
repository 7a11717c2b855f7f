package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"facteur/relay/daemon"
	"facteur/relay/maillog"
)

// memoryLimit is the runtime's soft memory limit unless GOMEMLIMIT is set.
const memoryLimit = 160 << 20

func cmdServe(args []string) int {
	fs, cfgPath := newFlags("serve")
	logFormat := fs.String("log-format", "", "text or json (default: the config's log_format)")
	if _, err := parseFlags(fs, args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return failErr(err)
	}
	if *logFormat != "" {
		if *logFormat != "text" && *logFormat != "json" {
			return fail("-log-format: want text or json, got %q", *logFormat)
		}
		cfg.LogFormat = *logFormat
	}
	var logw io.Writer = os.Stderr
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fail("log_file: %v", err)
		}
		defer f.Close()
		// Both: stderr for the service manager's journal, the file for
		// ops who grep a mainlog (issue 3 §7).
		logw = io.MultiWriter(os.Stderr, f)
	}
	log := maillog.New(logw, cfg.LogFormat)
	if os.Getenv("GOGC") == "" {
		// The live heap is small (sessions' buffers, the scheduler's window)
		// and short-lived garbage is most of the allocation: collecting less
		// often trades a few MB for CPU on the SMTP hot path.
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// GOGC=400 lets the heap grow to five times what is live; a soft
		// limit makes the collector run sooner instead once the process nears
		// it (issue 19: under 200 MB at every moment, a million queued). The
		// queue file is mapped, not counted. Large messages in many sessions
		// may need more: the limit is soft, the collector then works harder.
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := daemon.Run(ctx, cfg, log); err != nil {
		return failErr(err)
	}
	return 0
}
