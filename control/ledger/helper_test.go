package ledger

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
	"github.com/valyala/fasthttp"
)

// helperEnv selects a helper mode of the test binary: "serve" runs the money
// API over fasthttp on the database $LEDGER_HELPER_DB_URL and writes its
// address to $LEDGER_HELPER_ADDR, until killed. The crash test SIGKILLs it.
// "gift-client" is BenchmarkGifts' load generator in its own process.
const helperEnv = "LEDGER_TEST_HELPER"

func helperMain() int {
	if os.Getenv(helperEnv) == "gift-client" {
		return giftClientMain()
	}
	if err := serveHelper(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

func serveHelper() error {
	db, err := sqldb.Open(os.Getenv("LEDGER_HELPER_DB_URL"))
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := Migrate(ctx, db); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO ledger_gifts (id, name, price, animation_url, tier, active, updated_at) VALUES ('rose', 'Rose', 10, '', 1, 1, 0) ON CONFLICT (id) DO NOTHING"); err != nil {
		return err
	}
	l, err := New(db, DefaultConfig(), testLog())
	if err != nil {
		return err
	}
	if err := l.Start(); err != nil {
		return err
	}
	streams := newStreamTable()
	streams.set("live", "star", true)
	api, err := NewAPI(l, APIDeps{Auth: bearerAuth{}, Streams: streams, Rooms: &roomLog{}, Config: DefaultAPIConfig(), Log: testLog()})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tmp := os.Getenv("LEDGER_HELPER_ADDR") + ".tmp"
	if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, os.Getenv("LEDGER_HELPER_ADDR")); err != nil {
		return err
	}
	srv := &fasthttp.Server{Handler: api.Handle}
	go srv.Serve(ln)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	_ = srv.ShutdownWithContext(context.Background())
	api.Close()
	l.Close()
	_ = time.Now
	return db.Close()
}
