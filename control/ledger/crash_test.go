package ledger

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
	"github.com/liveengine/liveengine/internal/testsvc"
	"github.com/valyala/fasthttp"
)

// helperProc is the money API running in a child process.
type helperProc struct {
	cmd *exec.Cmd
	s   *server
}

func startHelper(t *testing.T, dbURL string, n int) *helperProc {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), fmt.Sprint("addr", n))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=serve", "LEDGER_HELPER_DB_URL="+dbURL, "LEDGER_HELPER_ADDR="+addrFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var addr []byte
	eventually(t, "helper address", func() bool {
		var err error
		addr, err = os.ReadFile(addrFile)
		return err == nil && len(addr) > 0
	})
	s := &server{t: t, addr: string(addr)}
	s.client = &fasthttp.HostClient{Addr: s.addr, MaxConns: 256, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second, MaxConnWaitTimeout: 60 * time.Second}
	return &helperProc{cmd: cmd, s: s}
}

// TestCrashMidStorm runs a gift storm against the API in a subprocess,
// SIGKILLs it mid-storm, restarts it on the same database (a SQLite file, or
// a PostgreSQL database that outlives the process) and retries every
// request with its key: nobody is charged twice, every answered gift got
// the same answer again, and the invariants hold.
func TestCrashMidStorm(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			url := "sqlite://" + filepath.Join(t.TempDir(), "crash.db")
			if d == "postgres" {
				url = testsvc.Postgres(t)
			}
			crashMidStorm(t, url)
		})
	}
}

func crashMidStorm(t *testing.T, dbURL string) {
	const users, gifts, coins = 40, 20, 1000
	p := startHelper(t, dbURL, 1)
	var wg sync.WaitGroup
	for u := 0; u < users; u++ {
		wg.Add(1)
		go func() { defer wg.Done(); p.s.topup(fmt.Sprint("fan", u), coins) }()
	}
	wg.Wait()

	var answered sync.Map // key -> body of a 201
	var nAnswered atomic.Int64
	stop := make(chan struct{})
	for u := 0; u < users; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprint("fan", u)
			for g := 0; g < gifts; g++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("%s-%d", user, g)
				st, b := p.s.do("POST", "/api/v1/streams/live/gifts", user, key, map[string]any{"gift_id": "rose"})
				if st == 0 { // connection broken by the kill: outcome unknown
					return
				}
				if st != 201 {
					t.Errorf("%s: %d %s", key, st, b)
					return
				}
				answered.Store(key, b)
				nAnswered.Add(1)
			}
		}()
	}
	eventually(t, "storm under way", func() bool { return nAnswered.Load() >= users*gifts/3 })
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	close(stop)
	wg.Wait()
	before := nAnswered.Load()
	t.Logf("killed after %d answered gifts", before)

	p2 := startHelper(t, dbURL, 2)
	replayed := 0
	for u := 0; u < users; u++ {
		user := fmt.Sprint("fan", u)
		for g := 0; g < gifts; g++ {
			key := fmt.Sprintf("%s-%d", user, g)
			st, b := p2.s.do("POST", "/api/v1/streams/live/gifts", user, key, map[string]any{"gift_id": "rose"})
			if st != 201 {
				t.Fatalf("retry %s: %d %s", key, st, b)
			}
			if first, ok := answered.Load(key); ok {
				replayed++
				if !bytes.Equal(first.([]byte), b) {
					t.Fatalf("retry %s answered differently:\n%s\n%s", key, first, b)
				}
			}
		}
	}
	if replayed != int(before) {
		t.Fatalf("%d replays, want %d", replayed, before)
	}
	db, err := sqldb.Open(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for u := 0; u < users; u++ {
		if b, _ := balance(context.Background(), db, Wallet(fmt.Sprint("fan", u))); b != coins-gifts*10 {
			t.Fatalf("fan%d wallet %d, want %d", u, b, coins-gifts*10)
		}
	}
	if b, _ := balance(context.Background(), db, Earnings("star")); b != users*gifts*7 {
		t.Fatalf("star earnings %d, want %d", b, users*gifts*7)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM ledger_transfers WHERE kind = 'gift'").Scan(&n); err != nil || n != users*gifts {
		t.Fatalf("%d gift transfers (%v), want %d", n, err, users*gifts)
	}
	mustInvariants(t, db)
}
