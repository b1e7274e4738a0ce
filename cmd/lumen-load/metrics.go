package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// runMetrics sends remote-write 1.0 requests as Prometheus' queue manager
// does: batches of --batch samples, each from a different series, the series
// scraped in turn every 15 s of sample time (values: see sampleValue).
func runMetrics(o options, out io.Writer) error {
	if err := loopbackOnly(o.httpAddr); err != nil {
		return err
	}
	if err := waitReady(o.httpAddr, 10*time.Second); err != nil {
		return err
	}
	// Label sets are built once: the generator shares the machine's cores
	// with the server, and formatting them per request would be its main cost.
	sets := metricLabels(o.series, o.names)
	perRound := (o.series + o.batch - 1) / o.batch
	requests := int64(o.total / o.batch)
	start := time.Now().Add(-time.Duration(requests/int64(perRound)+2) * 15 * time.Second).Truncate(15 * time.Second)
	cpu0, _ := procCPUSeconds(o.pid)
	client := &http.Client{Timeout: 30 * time.Second}
	var (
		next, sent, refused atomic.Int64
		firstErr            atomic.Value
		wg                  sync.WaitGroup
		mu                  sync.Mutex
		done                      = map[int64]bool{}
		doneUpTo            int64 = -1
	)
	deadline := time.Now().Add(o.duration)
	t0 := time.Now()
	for range o.concurrency {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= requests {
					return
				}
				// Samples of one series must arrive in order: a request
				// of round r waits until round r-1 is complete.
				round := i / int64(perRound)
				for {
					mu.Lock()
					ok := doneUpTo >= round*int64(perRound)-1
					mu.Unlock()
					if ok || time.Now().After(deadline) {
						break
					}
					time.Sleep(200 * time.Microsecond)
				}
				first := int(i%int64(perRound)) * o.batch
				ts := start.Add(time.Duration(round) * 15 * time.Second).UnixMilli()
				var req prompb.WriteRequest
				for s := first; s < min(first+o.batch, o.series); s++ {
					req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: sets[s], Samples: []prompb.Sample{{Timestamp: ts, Value: sampleValue(s, int(round))}}})
				}
				pb, _ := req.Marshal()
				body := snappy.Encode(nil, pb)
				hr, _ := http.NewRequest(http.MethodPost, "http://"+o.httpAddr+"/api/v1/write", bytes.NewReader(body))
				hr.Header.Set("Content-Encoding", "snappy")
				hr.Header.Set("Content-Type", "application/x-protobuf")
				hr.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
				resp, err := client.Do(hr)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					refused.Add(int64(len(req.Timeseries)))
					firstErr.CompareAndSwap(nil, err)
				} else {
					sent.Add(int64(len(req.Timeseries)))
				}
				mu.Lock()
				done[i] = true
				for done[doneUpTo+1] {
					delete(done, doneUpTo+1)
					doneUpTo++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpu1, cpuErr := procCPUSeconds(o.pid)
	fmt.Fprintf(out, "sent %d samples in %s: %.0f samples/s (%d series, %d samples per request, %d senders)\n",
		sent.Load(), elapsed.Round(time.Millisecond), float64(sent.Load())/elapsed.Seconds(), o.series, o.batch, o.concurrency)
	if n := refused.Load(); n > 0 {
		fmt.Fprintf(out, "refused %d samples; first error: %v\n", n, firstErr.Load())
	}
	if cpuErr == nil && sent.Load() > 0 {
		fmt.Fprintf(out, "server CPU: %.1f s, %.2f CPU-seconds per million samples\n", cpu1-cpu0, (cpu1-cpu0)/float64(sent.Load())*1e6)
	}
	if rss, err := procStatus(o.pid, "VmHWM"); err == nil {
		anon, _ := procStatus(o.pid, "RssAnon")
		fmt.Fprintf(out, "server peak RSS: %s (anonymous now: %s)\n", rss, anon)
	}
	if o.disk != "" && sent.Load() > 0 {
		n, err := dirBytes(o.disk)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "on disk: %d bytes in %s, %.2f bytes per sample\n", n, o.disk, float64(n)/float64(sent.Load()))
	}
	return nil
}

// dirBytes is the bytes the files under dir take on disk (their blocks, as
// du counts them).
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// sampleValue mixes the kinds of series a node exporter sends: a third
// constant (info, limits), a third counters with steady increments, a third
// gauges whose value jumps every scrape (the worst case for XOR).
func sampleValue(series, round int) float64 {
	switch series % 3 {
	case 0:
		return float64(series % 17)
	case 1:
		return float64(series + round*(series%10+1))
	default:
		return float64((series*7+round*3)%1000) / 10
	}
}
