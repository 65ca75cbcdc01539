// Command tcpfloor measures what the kernel alone costs to deliver a small
// frame to many loopback TCP sockets, the floor under any WebSocket fan-out
// measured on one machine: a writer process accepts N sockets and, R times
// a second, writes one frame to each with raw write(2) calls from W
// threads; a reader process (this binary again, so each side has its own
// file descriptor limit) connects the N sockets and drains them with
// epoll threads and raw read(2) calls. Each side reports its threads' CPU
// per delivery; the reader also the latency from the write round's start
// to the read and the whole machine's busy time per delivery.
//
//	tcpfloor -n 10000 -rate 10 -dur 5s -reader-flags "-pause 1ms"
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

var (
	mode       = flag.String("mode", "writer", "writer (starts the reader itself) or reader (-port)")
	rflags     = flag.String("reader-flags", "", "extra flags for the reader process, e.g. \"-threads 2 -pause 1ms\"")
	port       = flag.Int("port", 0, "reader: writer's port")
	n          = flag.Int("n", 10000, "connections")
	rate       = flag.Int("rate", 10, "rounds per second")
	dur        = flag.Duration("dur", 10*time.Second, "duration")
	size       = flag.Int("size", 150, "frame bytes")
	threads    = flag.Int("threads", 1, "writer or reader threads")
	batch      = flag.Int("batch", 1024, "reader: epoll batch")
	pause      = flag.Duration("pause", 0, "reader: sleep after a non-full batch")
	sndbuf     = flag.Int("sndbuf", 0, "writer: SO_SNDBUF (0 default)")
	rcvbuf     = flag.Int("rcvbuf", 0, "reader: SO_RCVBUF (0 default)")
	perRead    = flag.Bool("clock-per-read", false, "reader: clock read per read instead of per batch")
	goSys      = flag.Bool("go-syscall", false, "syscall.Syscall instead of RawSyscall for read/write")
	spin       = flag.Bool("spin", false, "reader: epoll_wait with timeout 0 (busy poll)")
	cc         = flag.String("cc", "", "TCP_CONGESTION for the sockets (reno, cubic, bbr)")
	schedBatch = flag.Bool("sched-batch", false, "threads run SCHED_BATCH (no wake-up preemption)")
	pin        = flag.Int("pin", -1, "pin thread i to CPU (pin+i)%2")
)

func threadCPU() time.Duration {
	var ts syscall.Timespec
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 3, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func sysBusy() (busy uint64) {
	f, _ := os.Open("/proc/stat")
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Scan()
	for i, x := range strings.Fields(s.Text())[1:] {
		v, _ := strconv.ParseUint(x, 10, 64)
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return
}

func rw(nr uintptr, fd int, b []byte) (int, syscall.Errno) {
	var r uintptr
	var e syscall.Errno
	if *goSys {
		r, _, e = syscall.Syscall(nr, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	} else {
		r, _, e = syscall.RawSyscall(nr, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	}
	return int(r), e
}

func main() {
	flag.Parse()
	if *mode == "writer" {
		writer()
	} else {
		reader()
	}
}

func writer() {
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	must(err)
	must(syscall.Bind(lfd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	must(syscall.Listen(lfd, 4096))
	sa, _ := syscall.Getsockname(lfd)
	args := []string{"-mode", "reader", "-port", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port),
		"-n", strconv.Itoa(*n), "-rate", strconv.Itoa(*rate), "-dur", dur.String(), "-size", strconv.Itoa(*size)}
	args = append(args, strings.Fields(*rflags)...)
	rd := exec.Command(os.Args[0], args...)
	rd.Stdout, rd.Stderr = os.Stdout, os.Stderr
	must(rd.Start())
	defer rd.Wait()
	fds := make([]int, 0, *n)
	for len(fds) < *n {
		s, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK)
		must(err)
		syscall.SetsockoptInt(s, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		if *cc != "" {
			must(syscall.SetsockoptString(s, syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, *cc))
		}
		if *sndbuf > 0 {
			syscall.SetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_SNDBUF, *sndbuf)
		}
		fds = append(fds, s)
	}
	time.Sleep(time.Second)
	rounds := int(dur.Seconds() * float64(*rate))
	var wg sync.WaitGroup
	cpu := make([]time.Duration, *threads)
	var short atomic.Int64
	start := time.Now().Add(10 * time.Millisecond)
	for w := 0; w < *threads; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			runtime.LockOSThread()
			pinTo(w)
			frame := make([]byte, *size)
			c0 := threadCPU()
			mine := fds[w*len(fds)/(*threads) : (w+1)*len(fds)/(*threads)]
			for r := 0; r < rounds; r++ {
				time.Sleep(time.Until(start.Add(time.Duration(r) * time.Second / time.Duration(*rate))))
				binary.LittleEndian.PutUint64(frame, uint64(time.Now().UnixNano()))
				for _, fd := range mine {
					if m, e := rw(syscall.SYS_WRITE, fd, frame); e != 0 || m != len(frame) {
						short.Add(1)
					}
				}
			}
			cpu[w] = threadCPU() - c0
		}(w)
	}
	wg.Wait()
	var tot time.Duration
	for _, c := range cpu {
		tot += c
	}
	d := rounds * *n
	fmt.Printf("writer: %d threads, %d deliveries, short writes %d, %.2f us/delivery (thread CPU)\n", *threads, d, short.Load(), float64(tot.Nanoseconds())/1e3/float64(d))
}

func reader() {
	fds := make([]int, *n)
	for i := range fds {
		c, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		must(err)
		if *cc != "" {
			must(syscall.SetsockoptString(c, syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, *cc))
		}
		if *rcvbuf > 0 {
			syscall.SetsockoptInt(c, syscall.SOL_SOCKET, syscall.SO_RCVBUF, *rcvbuf)
		}
		must(syscall.Connect(c, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: *port}))
		must(syscall.SetNonblock(c, true))
		syscall.SetsockoptInt(c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		fds[i] = c
	}
	want := int64(float64(*n) * dur.Seconds() * float64(*rate))
	var received atomic.Int64
	var stop atomic.Bool
	type res struct {
		lat          []int64
		cpu          time.Duration
		reads, waits int64
	}
	results := make([]res, *threads)
	var wg sync.WaitGroup
	var started atomic.Bool
	var cpu0 uint64
	for r := 0; r < *threads; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			runtime.LockOSThread()
			pinTo(r)
			ep, err := syscall.EpollCreate1(0)
			must(err)
			for i := r; i < *n; i += *threads {
				must(syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fds[i], &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fds[i])}))
			}
			ev := make([]syscall.EpollEvent, *batch)
			buf := make([]byte, 64<<10)
			lat := make([]int64, 0, want/int64(*threads)+1024)
			var reads, waits int64
			var c0 time.Duration
			to := 100
			if *spin {
				to = 0
			}
			for !stop.Load() {
				k, err := syscall.EpollWait(ep, ev, to)
				if err != nil || k <= 0 {
					continue
				}
				if c0 == 0 {
					c0 = threadCPU()
					if started.CompareAndSwap(false, true) {
						cpu0 = sysBusy()
					}
				}
				waits++
				t := time.Now().UnixNano()
				for i := 0; i < k; i++ {
					m, e := rw(syscall.SYS_READ, int(ev[i].Fd), buf)
					reads++
					if e != 0 || m <= 0 {
						continue
					}
					if *perRead {
						t = time.Now().UnixNano()
					}
					for off := 0; off+*size <= m; off += *size {
						lat = append(lat, t-int64(binary.LittleEndian.Uint64(buf[off:])))
					}
					received.Add(int64(m / *size))
				}
				if *pause > 0 && k < len(ev) {
					time.Sleep(*pause)
				}
			}
			results[r] = res{lat: lat, cpu: threadCPU() - c0, reads: reads, waits: waits}
		}(r)
	}
	for received.Load() < want {
		time.Sleep(time.Millisecond)
	}
	busy := sysBusy() - cpu0
	stop.Store(true)
	wg.Wait()
	var all []int64
	var cpu time.Duration
	var reads, waits int64
	for _, x := range results {
		all = append(all, x.lat...)
		cpu += x.cpu
		reads += x.reads
		waits += x.waits
	}
	slices.Sort(all)
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))]) / 1e6 }
	got := received.Load()
	fmt.Printf("reader: %d threads, %d deliveries, latency p50 %.1f ms p99 %.1f ms max %.1f ms; %.2f us/delivery (thread CPU); %d reads, %.1f deliveries per epoll_wait; whole box %.2f us/delivery\n",
		*threads, got, q(.5), q(.99), q(1), float64(cpu.Nanoseconds())/1e3/float64(got), reads, float64(got)/float64(max(waits, 1)), float64(busy)*1e4/float64(got))
}

func pinTo(i int) {
	if *schedBatch {
		var param [1]int32
		if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, 0, 3, uintptr(unsafe.Pointer(&param[0]))); e != 0 {
			panic(e)
		}
	}
	if *pin < 0 {
		return
	}
	var set [16]uint64
	set[0] = 1 << uint((*pin+i)%2)
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, uintptr(len(set)*8), uintptr(unsafe.Pointer(&set[0])))
	if e != 0 {
		panic(e)
	}
}
