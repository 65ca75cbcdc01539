package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/liveengine/liveengine/control/sqldb"
)

// Roles a user can have.
const (
	RoleViewer    = "viewer"
	RoleStreamer  = "streamer"
	RoleModerator = "moderator"
	RoleAdmin     = "admin"
)

// ValidRole reports whether r is a known role.
func ValidRole(r string) bool {
	switch r {
	case RoleViewer, RoleStreamer, RoleModerator, RoleAdmin:
		return true
	}
	return false
}

// User is an account.
type User struct {
	ID           string    `json:"id"`
	Username     string    `json:"username"`
	Email        string    `json:"email,omitempty"`
	PasswordHash string    `json:"-"`
	Role         string    `json:"role"`
	DisplayName  string    `json:"display_name"`
	AvatarURL    string    `json:"avatar_url"`
	Bio          string    `json:"bio"`
	CreatedAt    time.Time `json:"created_at"`
	Followers    int       `json:"followers"`
	Following    int       `json:"following"`
}

const userCols = `id, username, email, password_hash, role, display_name, avatar_url, bio, created_at`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var created int64
	err := row.Scan(&u.ID, &u.Username, &u.Email, &u.PasswordHash, &u.Role, &u.DisplayName, &u.AvatarURL, &u.Bio, &created)
	u.CreatedAt = fromMillis(created)
	return u, err
}

// CreateUser inserts u, assigning its id and creation time. It answers
// ErrConflict when the username or email is taken.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	u.ID = NewID(10)
	u.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	_, err := s.exec(ctx, `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.Username, u.Email, u.PasswordHash, u.Role, u.DisplayName, u.AvatarURL, u.Bio, toMillis(u.CreatedAt))
	if sqldb.IsUniqueViolation(err) {
		return fmt.Errorf("create user %q: %w", u.Username, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create user %q: %w", u.Username, err)
	}
	return nil
}

// UserByID loads a user with follower counts.
func (s *Store) UserByID(ctx context.Context, id string) (User, error) {
	u, err := scanUser(s.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
	if err != nil {
		return User{}, notFound(err, "user "+id)
	}
	if err := s.queryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM follows WHERE followee_id = ?),
		(SELECT COUNT(*) FROM follows WHERE follower_id = ?)`, id, id).Scan(&u.Followers, &u.Following); err != nil {
		return User{}, fmt.Errorf("user %s follow counts: %w", id, err)
	}
	return u, nil
}

// UserByLogin loads a user by username or email (case-insensitive).
func (s *Store) UserByLogin(ctx context.Context, login string) (User, error) {
	u, err := scanUser(s.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE username = ? OR email = ?`, login, login))
	if err != nil {
		return User{}, notFound(err, "user by login")
	}
	return u, nil
}

// Profile is the editable part of a user; nil fields stay unchanged.
type Profile struct {
	DisplayName *string `json:"display_name"`
	AvatarURL   *string `json:"avatar_url"`
	Bio         *string `json:"bio"`
}

// UpdateProfile changes the fields of p that are set.
func (s *Store) UpdateProfile(ctx context.Context, id string, p Profile) error {
	res, err := s.exec(ctx, `UPDATE users SET
		display_name = COALESCE(?, display_name),
		avatar_url = COALESCE(?, avatar_url),
		bio = COALESCE(?, bio) WHERE id = ?`, p.DisplayName, p.AvatarURL, p.Bio, id)
	return affected(res, err, "update profile "+id)
}

// SetRole changes a user's role.
func (s *Store) SetRole(ctx context.Context, id, role string) error {
	res, err := s.exec(ctx, `UPDATE users SET role = ? WHERE id = ?`, role, id)
	return affected(res, err, "set role "+id)
}

// Follow makes follower follow followee; following twice is not an error.
func (s *Store) Follow(ctx context.Context, follower, followee string) error {
	if _, err := s.UserByID(ctx, followee); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO follows (follower_id, followee_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		follower, followee, nowMillis())
	if err != nil {
		return fmt.Errorf("follow %s: %w", followee, err)
	}
	return nil
}

// Unfollow removes a follow; removing a missing one is not an error.
func (s *Store) Unfollow(ctx context.Context, follower, followee string) error {
	if _, err := s.exec(ctx, `DELETE FROM follows WHERE follower_id = ? AND followee_id = ?`, follower, followee); err != nil {
		return fmt.Errorf("unfollow %s: %w", followee, err)
	}
	return nil
}

// Followers lists the ids of a user's followers.
func (s *Store) Followers(ctx context.Context, id string) ([]string, error) {
	rows, err := s.query(ctx, `SELECT follower_id FROM follows WHERE followee_id = ? ORDER BY created_at`, id)
	if err != nil {
		return nil, fmt.Errorf("followers of %s: %w", id, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var f string
		if err := rows.Scan(&f); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// Session is a refresh-token session: one per login, rotated on each
// refresh. Only hashes of the secrets are stored.
type Session struct {
	ID         string    `json:"id"`
	UserID     string    `json:"user_id"`
	UserAgent  string    `json:"user_agent"`
	IP         string    `json:"ip"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Revoked    bool      `json:"revoked"`
	Current    bool      `json:"current,omitempty"`
}

// ErrTokenReused is returned by RotateSession when a refresh token that was
// already rotated away is presented again: a sign it was stolen, so the
// whole session is revoked.
var ErrTokenReused = fmt.Errorf("refresh token reused; session revoked")

// ErrSessionInvalid is returned for an unknown, revoked or expired session.
var ErrSessionInvalid = fmt.Errorf("session invalid")

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// CreateSession starts a session and returns it with its refresh token
// ("SESSIONID.SECRET").
func (s *Store) CreateSession(ctx context.Context, userID, userAgent, ip string, ttl time.Duration) (Session, string, error) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	// Both come from request headers: raw bytes that PostgreSQL refuses
	// unless they are valid UTF-8 (a 500 on login), so clean and cut them.
	sess := Session{ID: NewID(10), UserID: userID, UserAgent: truncate(userAgent, 200), IP: truncate(ip, 64),
		CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(ttl)}
	secret := NewID(24)
	_, err := s.exec(ctx, `INSERT INTO sessions (id, user_id, token_hash, user_agent, ip, created_at, last_used_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, sess.ID, userID, hashSecret(secret), sess.UserAgent, sess.IP,
		toMillis(now), toMillis(now), toMillis(sess.ExpiresAt))
	if err != nil {
		return Session{}, "", fmt.Errorf("create session: %w", err)
	}
	return sess, sess.ID + "." + secret, nil
}

// RotateSession exchanges a refresh token for a new one. The old token stops
// working; presenting it again revokes the session (ErrTokenReused).
func (s *Store) RotateSession(ctx context.Context, token string, ttl time.Duration) (Session, string, error) {
	id, secret, ok := splitToken(token)
	if !ok {
		return Session{}, "", ErrSessionInvalid
	}
	var sess Session
	var hash, prev string
	var created, used, expires, revoked int64
	err := s.queryRow(ctx, `SELECT id, user_id, token_hash, prev_hash, user_agent, ip, created_at, last_used_at, expires_at, revoked_at
		FROM sessions WHERE id = ?`, id).Scan(&sess.ID, &sess.UserID, &hash, &prev, &sess.UserAgent, &sess.IP, &created, &used, &expires, &revoked)
	if err != nil {
		return Session{}, "", ErrSessionInvalid
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	got := hashSecret(secret)
	switch {
	case revoked != 0 || now.UnixMilli() >= expires:
		return Session{}, "", ErrSessionInvalid
	case prev != "" && subtle.ConstantTimeCompare([]byte(got), []byte(prev)) == 1:
		_ = s.RevokeSession(ctx, sess.UserID, sess.ID)
		return Session{}, "", ErrTokenReused
	case subtle.ConstantTimeCompare([]byte(got), []byte(hash)) != 1:
		return Session{}, "", ErrSessionInvalid
	}
	newSecret := NewID(24)
	sess.CreatedAt, sess.LastUsedAt, sess.ExpiresAt = fromMillis(created), now, now.Add(ttl)
	// The WHERE on token_hash makes two concurrent refreshes with the same
	// token race safely: only one rotates.
	res, err := s.exec(ctx, `UPDATE sessions SET token_hash = ?, prev_hash = ?, last_used_at = ?, expires_at = ?
		WHERE id = ? AND token_hash = ? AND revoked_at = 0`, hashSecret(newSecret), hash, toMillis(now), toMillis(sess.ExpiresAt), id, hash)
	if err := affected(res, err, "rotate session"); err != nil {
		return Session{}, "", ErrSessionInvalid
	}
	return sess, sess.ID + "." + newSecret, nil
}

// SessionActive reports whether a session exists, is not revoked and has
// not expired.
func (s *Store) SessionActive(ctx context.Context, id string) (bool, error) {
	var n int
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM sessions WHERE id = ? AND revoked_at = 0 AND expires_at > ?`, id, nowMillis()).Scan(&n)
	return n > 0, err
}

// RevokeSession revokes one of the user's sessions.
func (s *Store) RevokeSession(ctx context.Context, userID, id string) error {
	res, err := s.exec(ctx, `UPDATE sessions SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at = 0`, nowMillis(), id, userID)
	return affected(res, err, "revoke session "+id)
}

// RevokeAllSessions revokes every session of a user.
func (s *Store) RevokeAllSessions(ctx context.Context, userID string) error {
	_, err := s.exec(ctx, `UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at = 0`, nowMillis(), userID)
	if err != nil {
		return fmt.Errorf("revoke sessions of %s: %w", userID, err)
	}
	return nil
}

// Sessions lists a user's active sessions, newest first.
func (s *Store) Sessions(ctx context.Context, userID string) ([]Session, error) {
	rows, err := s.query(ctx, `SELECT id, user_id, user_agent, ip, created_at, last_used_at, expires_at
		FROM sessions WHERE user_id = ? AND revoked_at = 0 AND expires_at > ? ORDER BY created_at DESC`, userID, nowMillis())
	if err != nil {
		return nil, fmt.Errorf("sessions of %s: %w", userID, err)
	}
	defer rows.Close()
	out := []Session{}
	for rows.Next() {
		var se Session
		var c, u, e int64
		if err := rows.Scan(&se.ID, &se.UserID, &se.UserAgent, &se.IP, &c, &u, &e); err != nil {
			return nil, err
		}
		se.CreatedAt, se.LastUsedAt, se.ExpiresAt = fromMillis(c), fromMillis(u), fromMillis(e)
		out = append(out, se)
	}
	return out, rows.Err()
}

func splitToken(tok string) (id, secret string, ok bool) {
	for i := 0; i < len(tok); i++ {
		if tok[i] == '.' {
			return tok[:i], tok[i+1:], i > 0 && i < len(tok)-1
		}
	}
	return "", "", false
}

// truncate makes s valid UTF-8 without NUL and cuts it to at most n bytes on a rune
// boundary, so the result is always storable text.
func truncate(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func affected(res interface{ RowsAffected() (int64, error) }, err error, what string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}
