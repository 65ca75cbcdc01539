package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/liveengine/liveengine/control/sqldb"
	"github.com/liveengine/liveengine/control/store"
	"github.com/liveengine/liveengine/internal/testsvc"
)

// `liveengine set-role` gives an existing user a role in the configured
// database (SQLite and PostgreSQL), and refuses an unknown user or role
// without changing anything.
func TestSetRoleCommand(t *testing.T) {
	ctx := context.Background()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			url := "sqlite://" + filepath.Join(t.TempDir(), "le.db")
			if d == "postgres" {
				url = testsvc.Postgres(t)
			}
			db, err := sqldb.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			st := store.New(db)
			if err := st.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			u := store.User{Username: "ops", Email: "ops@example.com", PasswordHash: "x", Role: store.RoleViewer}
			if err := st.CreateUser(ctx, &u); err != nil {
				t.Fatal(err)
			}
			run := func(args ...string) (string, error) {
				cmd := exec.Command(binPath, append([]string{"set-role", "-config", ""}, args...)...)
				cmd.Env = append(cmd.Environ(), "LIVEENGINE_CONTROL_DATABASE_URL="+url)
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			role := func() string {
				got, err := st.UserByID(ctx, u.ID)
				if err != nil {
					t.Fatal(err)
				}
				return got.Role
			}
			if out, err := run("nobody", "admin"); err == nil || !strings.Contains(out, `no user "nobody"`) {
				t.Fatalf("unknown user: err %v, %s", err, out)
			}
			if out, err := run("ops", "root"); err == nil || !strings.Contains(out, "not a role") {
				t.Fatalf("bad role: err %v, %s", err, out)
			}
			if out, err := run("ops"); err == nil || !strings.Contains(out, "usage") {
				t.Fatalf("no role: err %v, %s", err, out)
			}
			if r := role(); r != store.RoleViewer {
				t.Fatalf("role %q after refused commands", r)
			}
			if out, err := run("OPS@example.com", "admin"); err != nil || !strings.Contains(out, "now admin") {
				t.Fatalf("set-role: %v\n%s", err, out)
			}
			if r := role(); r != store.RoleAdmin {
				t.Fatalf("role %q, want admin", r)
			}
		})
	}
}
