package packager

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

	run := func(url string) float64 {
		out, err := exec.Command(wrk, "-t2", "-c64", "-d5s", url).CombinedOutput()
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		b.Logf("%s\n%s", url, out)
		m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			b.Fatalf("no Requests/sec in wrk output:\n%s", out)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	// Alternate the two servers so a change in the (shared) machine's load
	// hits both alike.
	b.ResetTimer()
	purl := "http://" + ln.Addr().String() + "/hls/b/source/part0.0.mp4"
	var ours, theirs float64
	for range 2 {
		ours += run(purl) / 2
		theirs += run(nurl) / 2
	}
	b.StopTimer()
	b.ReportMetric(ours, "packager-req/s")
	b.ReportMetric(theirs, "nginx-req/s")
	b.ReportMetric(ours/theirs, "ratio")
}
