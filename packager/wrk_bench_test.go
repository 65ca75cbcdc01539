package packager

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkWrkPartVsNginx serves the same ~62 KB part from the packager's
// fasthttp handler and from nginx (static file, sendfile), loads each with
// `wrk -t2 -c64`, and reports both request rates and their ratio. It runs
// the load once whatever b.N is: run it with -benchtime 1x. It needs the
// wrk and nginx programs (Debian packages wrk, nginx).
func BenchmarkWrkPartVsNginx(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk is needed: apt-get install -y wrk")
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/nginx"); err2 != nil {
			b.Fatal("nginx is needed: apt-get install -y nginx-light")
		}
		nginx = "/usr/sbin/nginx"
	}
	pk := newBenchPackager(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: pk.Handle}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })

	// nginx serves the very same bytes from a file.
	dir := b.TempDir()
	g := pk.group("b")
	data := g.rendition("source").cur.parts[0].data
	root := filepath.Join(dir, "www", "hls", "b", "source")
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "part0.0.mp4"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	nport := nl.Addr().(*net.TCPAddr).Port
	nl.Close()
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 2;
user root;
pid %[1]s/nginx.pid;
error_log stderr error;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  open_file_cache max=100;
  types { video/mp4 mp4; }
  client_body_temp_path %[1]s/tmp; proxy_temp_path %[1]s/tmp; fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp; scgi_temp_path %[1]s/tmp;
  server {
    listen 127.0.0.1:%[2]d;
    root %[1]s/www;
    add_header Cache-Control "max-age=30, immutable";
    add_header Access-Control-Allow-Origin *;
  }
}
`, dir, nport)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	nurl := fmt.Sprintf("http://127.0.0.1:%d/hls/b/source/part0.0.mp4", nport)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var res fasthttp.Response
		var req fasthttp.Request
		req.SetRequestURI(nurl)
		if err := fasthttp.Do(&req, &res); err == nil && res.StatusCode() == 200 && len(res.Body()) == len(data) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("nginx did not start serving")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// run loads url with wrk and returns the request rate and the server's
	// CPU time per request (cpu reads the server's CPU time so far), which
	// the load other processes put on the machine does not skew.
	run := func(url string, cpu func() time.Duration) (float64, time.Duration) {
		before := cpu()
		out, err := exec.Command(wrk, "-t2", "-c64", "-d5s", url).CombinedOutput()
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		used := cpu() - before
		b.Logf("%s\n%s", url, out)
		m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
		n := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out)
		if m == nil || n == nil {
			b.Fatalf("no request counts in wrk output:\n%s", out)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		reqs, _ := strconv.Atoi(string(n[1]))
		return v, used / time.Duration(max(reqs, 1))
	}
	selfCPU := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	nginxCPU := func() time.Duration { return processTreeCPU(cmd.Process.Pid) }
	// Alternate the two servers so a change in the (shared) machine's load
	// hits both alike.
	b.ResetTimer()
	purl := "http://" + ln.Addr().String() + "/hls/b/source/part0.0.mp4"
	var ours, theirs float64
	var ourCPU, theirCPU time.Duration
	for range 2 {
		r, c := run(purl, selfCPU)
		ours, ourCPU = ours+r/2, ourCPU+c/2
		r, c = run(nurl, nginxCPU)
		theirs, theirCPU = theirs+r/2, theirCPU+c/2
	}
	b.StopTimer()
	b.ReportMetric(ours, "packager-req/s")
	b.ReportMetric(theirs, "nginx-req/s")
	b.ReportMetric(ours/theirs, "ratio")
	b.ReportMetric(float64(ourCPU.Nanoseconds())/1000, "packager-cpu-us/req")
	b.ReportMetric(float64(theirCPU.Nanoseconds())/1000, "nginx-cpu-us/req")
}

// processTreeCPU returns the CPU time used by pid and its children (nginx
// and its workers), from /proc.
func processTreeCPU(pid int) time.Duration {
	entries, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if p != pid && ppid != pid {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += ut + st
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}
