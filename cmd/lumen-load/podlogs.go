package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// runPodLogs writes container log files, as containerd does, under a
// /var/log/pods-shaped directory at a steady rate, for a `lumen agent`
// reading it; it reports the agent's CPU and memory (by --pid) and waits
// until the agent has read and shipped every line (by its /metrics).
func runPodLogs(o options, out io.Writer) error {
	if o.podsDir == "" {
		return fmt.Errorf("--pods-dir is required with --signal podlogs")
	}
	if err := loopbackOnly(o.agentAddr); err != nil {
		return err
	}
	if o.rate < 1 || o.files < 1 {
		return fmt.Errorf("--rate and --files must be positive")
	}
	var files []*os.File
	for i := range o.files {
		dir := filepath.Join(o.podsDir, fmt.Sprintf("load_app-%d-7d4b9c_uid-%04d", i, i), "app")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(dir, "0.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		files = append(files, f)
	}
	m0, err := scrape(o.agentAddr)
	if err != nil {
		return fmt.Errorf("agent metrics at %s: %w", o.agentAddr, err)
	}
	read0, shipped0 := m0["lumen_agent_log_lines_read_total"], m0[`lumen_agent_shipped_items_total{signal="logs"}`]
	gen := &lineGen{rnd: rand.New(rand.NewPCG(1, 2)), zipf: map[string][]int{}}
	cpu0, _ := procCPUSeconds(o.pid)
	var rss []int
	const tick = 10 * time.Millisecond
	perTick := float64(o.rate) * tick.Seconds()
	start := time.Now()
	var written, bytes int64
	var owed float64
	next := start
	lastSample := start
	buf := make([][]byte, len(files))
	for time.Since(start) < o.duration && written < int64(o.total) {
		owed += perTick
		for owed >= 1 && written < int64(o.total) {
			tid, sid := "", ""
			if written%5 == 0 {
				tid, sid = gen.hex(32), gen.hex(16)
			}
			s, _ := gen.line(time.Now(), tid, sid)
			// A container writes a multi-line message (a stack trace) as
			// lines; each counts.
			for _, part := range strings.Split(s, "\n") {
				i := int(written) % len(files)
				buf[i] = fmt.Appendf(buf[i], "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), part)
				written++
				owed--
			}
		}
		for i, b := range buf {
			if len(b) > 0 {
				if _, err := files[i].Write(b); err != nil {
					return err
				}
				bytes += int64(len(b))
				buf[i] = b[:0]
			}
		}
		if time.Since(lastSample) >= time.Second {
			lastSample = time.Now()
			if v, err := procStatus(o.pid, "VmRSS"); err == nil {
				var kb int
				fmt.Sscanf(v, "%d", &kb)
				rss = append(rss, kb)
			}
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
	elapsed := time.Since(start)
	cpu1, _ := procCPUSeconds(o.pid)
	fmt.Fprintf(out, "wrote %d lines (%.1f MiB) to %d files in %s: %.0f lines/s\n", written, float64(bytes)/(1<<20), len(files), elapsed.Round(time.Millisecond), float64(written)/elapsed.Seconds())
	// Wait for the agent to read and ship everything written.
	deadline := time.Now().Add(2 * time.Minute)
	var read, shipped float64
	for time.Now().Before(deadline) {
		m, err := scrape(o.agentAddr)
		if err == nil {
			read, shipped = m["lumen_agent_log_lines_read_total"]-read0, m[`lumen_agent_shipped_items_total{signal="logs"}`]-shipped0
			if int64(read) >= written && int64(shipped) >= written {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	caughtUp := time.Since(start) - elapsed
	fmt.Fprintf(out, "agent read %.0f and shipped %.0f of the %d lines, the last %s after writing stopped\n", read, shipped, written, caughtUp.Round(time.Millisecond))
	if o.pid != 0 {
		slices.Sort(rss)
		med, peak := 0, 0
		if len(rss) > 0 {
			med, peak = rss[len(rss)/2], rss[len(rss)-1]
		}
		hwm, _ := procStatus(o.pid, "VmHWM")
		fmt.Fprintf(out, "agent CPU while writing: %.3f cores (%.2f CPU-s per million lines); RSS median %d MiB, max %d MiB (VmHWM %s)\n",
			(cpu1-cpu0)/elapsed.Seconds(), (cpu1-cpu0)/float64(written)*1e6, med/1024, peak/1024, hwm)
	}
	if int64(read) < written || int64(shipped) < written {
		return fmt.Errorf("the agent fell behind: read %.0f, shipped %.0f of %d", read, shipped, written)
	}
	return nil
}
