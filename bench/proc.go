package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoProcess means no running process matched -server-pid or -server-name.
var ErrNoProcess = errors.New("bench: server process not found")

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// ProcSampler samples a server process's CPU and RSS from /proc.
type ProcSampler struct {
	PID  int
	Name string

	lastTicks uint64
	lastAt    time.Time
}

// ProcSample is one reading.
type ProcSample struct {
	CPU     float64 // percent of one core, over the last interval
	HostCPU float64 // percent of all cores, over the last interval
	RSSMB   float64
}

// NewProcSampler watches pid.
func NewProcSampler(pid int) (*ProcSampler, error) {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return nil, fmt.Errorf("server pid %d: %w", pid, ErrNoProcess)
	}
	p := &ProcSampler{PID: pid, Name: strings.TrimSpace(string(comm))}
	p.lastTicks, _ = procTicks(pid)
	p.lastAt = time.Now()
	hostCPU.sample()
	return p, nil
}

// FindProcess returns the pid of the newest process whose command name is
// name (as in /proc/PID/comm).
func FindProcess(name string) (int, error) {
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	best := 0
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if pid != os.Getpid() && pid > best {
			best = pid
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("server name %q: %w", name, ErrNoProcess)
	}
	return best, nil
}

// Sample reads the process's CPU use since the previous sample and its RSS.
func (p *ProcSampler) Sample() ProcSample {
	var s ProcSample
	now := time.Now()
	if t, err := procTicks(p.PID); err == nil {
		dt := now.Sub(p.lastAt).Seconds()
		if dt > 0 && t >= p.lastTicks {
			s.CPU = float64(t-p.lastTicks) / clockTicks / dt * 100
		}
		p.lastTicks, p.lastAt = t, now
	}
	s.RSSMB = procRSSMB(p.PID)
	s.HostCPU = hostCPU.sample()
	return s
}

// procTicks returns utime+stime of pid in clock ticks.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc %d stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("proc %d stat: malformed", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proc %d stat: malformed times", pid)
	}
	return ut + st, nil
}

func procRSSMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// hostCPU tracks whole-machine CPU use from /proc/stat.
var hostCPU hostSampler

type hostSampler struct {
	mu          sync.Mutex
	busy, total uint64
	last        float64
	lastAt      time.Time
}

// sample returns the busy percentage of all cores since the previous call
// (calls closer than 200 ms apart return the previous value).
func (h *hostSampler) sample() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.lastAt) < 200*time.Millisecond {
		return h.last
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var total, idle uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	busy := total - idle
	if h.total > 0 && total > h.total {
		h.last = float64(busy-h.busy) / float64(total-h.total) * 100
	}
	h.busy, h.total, h.lastAt = busy, total, time.Now()
	return h.last
}
