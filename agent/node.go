package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/procfs"
	"github.com/prometheus/procfs/blockdevice"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.uber.org/zap"
)

// NodeConfig configures the node's metrics.
type NodeConfig struct {
	// Interval is how often they are read and sent; 0 turns them off.
	Interval time.Duration `yaml:"interval"`
	// ProcPath, SysPath and RootPath are where the host's /proc, /sys and
	// / are mounted (in the DaemonSet: /host/proc, /host/sys, /host/root).
	ProcPath string `yaml:"proc_path"`
	SysPath  string `yaml:"sys_path"`
	RootPath string `yaml:"root_path"`
}

// DefaultNodeConfig reads this machine's /proc and /sys every 15 s.
func DefaultNodeConfig() NodeConfig {
	return NodeConfig{Interval: 15 * time.Second, ProcPath: "/proc", SysPath: "/sys", RootPath: "/"}
}

// ignoredFS are file systems that hold no user data, as node_exporter's
// defaults leave them out.
var ignoredFS = regexp.MustCompile(`^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|erofs|fusectl|fuse\.lxcfs|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|ramfs|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tmpfs|tracefs|nfsd)$`)

// nodeMetrics reads CPU, memory, load, file systems, disks and network
// from /proc and /sys (with prometheus/procfs) under node_exporter's
// names, as OTLP metrics labelled with the node, into the buffer.
type nodeMetrics struct {
	cfg   NodeConfig
	node  string
	proc  procfs.FS
	block blockdevice.FS
	buf   *Buffer
	log   *zap.Logger
	enc   *zstd.Encoder
	start pcommon.Timestamp
}

func newNodeMetrics(cfg NodeConfig, node string, buf *Buffer, log *zap.Logger) (*nodeMetrics, error) {
	proc, err := procfs.NewFS(cfg.ProcPath)
	if err != nil {
		return nil, fmt.Errorf("node metrics: %w", err)
	}
	block, err := blockdevice.NewFS(cfg.ProcPath, cfg.SysPath)
	if err != nil {
		return nil, fmt.Errorf("node metrics: %w", err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	n := &nodeMetrics{cfg: cfg, node: node, proc: proc, block: block, buf: buf, log: log.Named("node"), enc: enc}
	if st, err := proc.Stat(); err == nil && st.BootTime > 0 {
		n.start = pcommon.Timestamp(st.BootTime * uint64(time.Second))
	}
	return n, nil
}

func (n *nodeMetrics) run(ctx context.Context) {
	t := time.NewTicker(n.cfg.Interval)
	defer t.Stop()
	for {
		md := n.collect(time.Now())
		if c := md.DataPointCount(); c > 0 {
			body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
			if err == nil {
				err = n.buf.Append(Record{Signal: SignalMetrics, Items: c, Body: n.enc.EncodeAll(body, nil)})
			}
			if err != nil {
				n.log.Error("buffer the node's metrics", zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// collect reads every source it can; one that fails is logged and left out.
func (n *nodeMetrics) collect(now time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	res := rm.Resource().Attributes()
	res.PutStr("service.name", "lumen-agent")
	res.PutStr("service.instance.id", n.node)
	res.PutStr("host.name", n.node)
	res.PutStr("k8s.node.name", n.node)
	ms := rm.ScopeMetrics().AppendEmpty()
	ms.Scope().SetName("lumen-agent/node")
	ts := pcommon.NewTimestampFromTime(now)
	b := &metricBuilder{ms: ms.Metrics(), ts: ts, start: n.start, node: n.node}
	warn := func(what string, err error) { n.log.Debug("read "+what, zap.Error(err)) }

	if st, err := n.proc.Stat(); err == nil {
		cpu := b.counter("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", "s")
		for id, c := range st.CPU {
			for mode, v := range map[string]float64{"user": c.User, "nice": c.Nice, "system": c.System, "idle": c.Idle, "iowait": c.Iowait, "irq": c.IRQ, "softirq": c.SoftIRQ, "steal": c.Steal} {
				b.point(cpu, v, "cpu", strconv.FormatInt(id, 10), "mode", mode)
			}
		}
	} else {
		warn("/proc/stat", err)
	}
	if mi, err := n.proc.Meminfo(); err == nil {
		for name, v := range map[string]*uint64{"MemTotal": mi.MemTotalBytes, "MemFree": mi.MemFreeBytes, "MemAvailable": mi.MemAvailableBytes,
			"Buffers": mi.BuffersBytes, "Cached": mi.CachedBytes, "SwapTotal": mi.SwapTotalBytes, "SwapFree": mi.SwapFreeBytes} {
			if v != nil {
				b.point(b.gauge("node_memory_"+name+"_bytes", "Memory information field "+name+".", "By"), float64(*v))
			}
		}
	} else {
		warn("/proc/meminfo", err)
	}
	if la, err := n.proc.LoadAvg(); err == nil {
		b.point(b.gauge("node_load1", "1m load average.", ""), la.Load1)
		b.point(b.gauge("node_load5", "5m load average.", ""), la.Load5)
		b.point(b.gauge("node_load15", "15m load average.", ""), la.Load15)
	} else {
		warn("/proc/loadavg", err)
	}
	n.filesystems(b, warn)
	if disks, err := n.block.ProcDiskstats(); err == nil {
		rb := b.counter("node_disk_read_bytes_total", "Bytes read from the disk.", "By")
		wb := b.counter("node_disk_written_bytes_total", "Bytes written to the disk.", "By")
		rc := b.counter("node_disk_reads_completed_total", "Reads completed.", "")
		wc := b.counter("node_disk_writes_completed_total", "Writes completed.", "")
		for _, d := range disks {
			if d.ReadIOs == 0 && d.WriteIOs == 0 {
				continue
			}
			b.point(rb, float64(d.ReadSectors)*512, "device", d.DeviceName)
			b.point(wb, float64(d.WriteSectors)*512, "device", d.DeviceName)
			b.point(rc, float64(d.ReadIOs), "device", d.DeviceName)
			b.point(wc, float64(d.WriteIOs), "device", d.DeviceName)
		}
	} else {
		warn("/proc/diskstats", err)
	}
	// The host's network namespace is that of its PID 1.
	netdev, err := func() (procfs.NetDev, error) {
		if p, err := n.proc.Proc(1); err == nil {
			if nd, err := p.NetDev(); err == nil {
				return nd, nil
			}
		}
		return n.proc.NetDev()
	}()
	if err == nil {
		rx := b.counter("node_network_receive_bytes_total", "Bytes received.", "By")
		tx := b.counter("node_network_transmit_bytes_total", "Bytes sent.", "By")
		rp := b.counter("node_network_receive_packets_total", "Packets received.", "")
		tp := b.counter("node_network_transmit_packets_total", "Packets sent.", "")
		re := b.counter("node_network_receive_errs_total", "Receive errors.", "")
		te := b.counter("node_network_transmit_errs_total", "Transmit errors.", "")
		for _, l := range netdev {
			b.point(rx, float64(l.RxBytes), "device", l.Name)
			b.point(tx, float64(l.TxBytes), "device", l.Name)
			b.point(rp, float64(l.RxPackets), "device", l.Name)
			b.point(tp, float64(l.TxPackets), "device", l.Name)
			b.point(re, float64(l.RxErrors), "device", l.Name)
			b.point(te, float64(l.TxErrors), "device", l.Name)
		}
	} else {
		warn("net/dev", err)
	}
	return md
}

func (n *nodeMetrics) filesystems(b *metricBuilder, warn func(string, error)) {
	p, err := n.proc.Proc(1)
	if err != nil {
		p, err = n.proc.Self()
	}
	if err != nil {
		warn("mounts", err)
		return
	}
	mounts, err := p.MountInfo()
	if err != nil {
		warn("mountinfo", err)
		return
	}
	size := b.gauge("node_filesystem_size_bytes", "File system size.", "By")
	free := b.gauge("node_filesystem_free_bytes", "File system free space.", "By")
	avail := b.gauge("node_filesystem_avail_bytes", "File system space available to non-root users.", "By")
	seen := map[string]bool{}
	for _, m := range mounts {
		if ignoredFS.MatchString(m.FSType) || seen[m.MountPoint] {
			continue
		}
		seen[m.MountPoint] = true
		var st syscall.Statfs_t
		if err := syscall.Statfs(filepath.Join(n.cfg.RootPath, m.MountPoint), &st); err != nil {
			continue
		}
		labels := []string{"mountpoint", m.MountPoint, "fstype", m.FSType, "device", m.Source}
		bs := float64(st.Bsize)
		b.point(size, float64(st.Blocks)*bs, labels...)
		b.point(free, float64(st.Bfree)*bs, labels...)
		b.point(avail, float64(st.Bavail)*bs, labels...)
	}
}

type metricBuilder struct {
	ms        pmetric.MetricSlice
	ts, start pcommon.Timestamp
	node      string
}

func (b *metricBuilder) counter(name, help, unit string) pmetric.NumberDataPointSlice {
	m := b.ms.AppendEmpty()
	m.SetName(name)
	m.SetDescription(help)
	m.SetUnit(unit)
	s := m.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	return s.DataPoints()
}

func (b *metricBuilder) gauge(name, help, unit string) pmetric.NumberDataPointSlice {
	m := b.ms.AppendEmpty()
	m.SetName(name)
	m.SetDescription(help)
	m.SetUnit(unit)
	return m.SetEmptyGauge().DataPoints()
}

func (b *metricBuilder) point(dps pmetric.NumberDataPointSlice, v float64, labels ...string) {
	dp := dps.AppendEmpty()
	dp.SetTimestamp(b.ts)
	dp.SetStartTimestamp(b.start)
	dp.SetDoubleValue(v)
	dp.Attributes().PutStr("node", b.node)
	for i := 0; i+1 < len(labels); i += 2 {
		dp.Attributes().PutStr(labels[i], labels[i+1])
	}
}
