package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/mail"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/liveengine/liveengine/control/auth"
	"github.com/liveengine/liveengine/control/store"
	"github.com/valyala/fasthttp"
)

// Identity is the authenticated caller of a request.
type Identity struct {
	UserID    string
	Role      string
	SessionID string
}

// HasRole reports whether the caller has one of roles; admins have all.
func (id Identity) HasRole(roles ...string) bool {
	return id.Role == store.RoleAdmin || slices.Contains(roles, id.Role)
}

const identityKey = "control.identity"

// Caller returns the authenticated caller of a request; ok is false for
// anonymous requests. Handlers of Authenticated routes always have one.
func Caller(ctx *fasthttp.RequestCtx) (Identity, bool) {
	id, ok := ctx.UserValue(identityKey).(Identity)
	return id, ok
}

// authenticate reads the bearer token. Public routes accept a missing
// token but still refuse a bad one, so a client learns its token is stale.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx, access Access) error {
	h := string(ctx.Request.Header.Peek("Authorization"))
	if h == "" {
		if access == Authenticated {
			return ErrUnauthorized
		}
		return nil
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return Errorf(fasthttp.StatusUnauthorized, "invalid_token", "Authorization header must be \"Bearer ACCESS_TOKEN\"")
	}
	id, err := s.verify(tok)
	if err != nil {
		return err
	}
	ctx.SetUserValue(identityKey, id)
	return nil
}

func (s *Server) verify(tok string) (Identity, error) {
	c, err := s.tokens.Verify(tok)
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return Identity{}, Errorf(fasthttp.StatusUnauthorized, "token_expired", "access token expired; POST /api/v1/auth/refresh for a new one")
	case err != nil:
		return Identity{}, Errorf(fasthttp.StatusUnauthorized, "invalid_token", "access token is not valid")
	}
	return Identity{UserID: c.Subject, Role: c.Role, SessionID: c.SessionID}, nil
}

// requireRole answers 403 unless the caller has one of roles.
func requireRole(ctx *fasthttp.RequestCtx, roles ...string) (Identity, error) {
	id, ok := Caller(ctx)
	if !ok {
		return Identity{}, ErrUnauthorized
	}
	if !id.HasRole(roles...) {
		return id, Errorf(fasthttp.StatusForbidden, "forbidden", "this needs role %s; you are %s", strings.Join(roles, " or "), id.Role)
	}
	return id, nil
}

// decode parses a JSON body strictly: unknown fields and trailing data are
// errors, so typos do not pass silently.
func decode(ctx *fasthttp.RequestCtx, v any) error {
	body := ctx.PostBody()
	if len(body) == 0 {
		return badRequest("request body must be a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body is not valid JSON for this route: %v", err)
	}
	if dec.More() {
		return badRequest("request body has data after the JSON object")
	}
	// encoding/json turns invalid UTF-8 into U+FFFD but keeps \u0000,
	// which PostgreSQL text refuses (a 500 on every route that stores it).
	if !storableValue(reflect.ValueOf(v)) {
		return badRequest("request body: strings must not contain NUL characters")
	}
	return nil
}

// storableText reports whether s can be stored as text on every database:
// valid UTF-8 without NUL.
func storableText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// storableArgs is storableText over every query key and value, without
// copying them to strings (it runs on every request).
func storableArgs(args *fasthttp.Args) bool {
	for k, v := range args.All() {
		if !storableBytes(k) || !storableBytes(v) {
			return false
		}
	}
	return true
}

func storableBytes(b []byte) bool {
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}

// storableValue walks a decoded request (structs, pointers, slices, maps)
// and reports whether all its strings are storableText.
func storableValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return storableText(v.String())
	case reflect.Pointer, reflect.Interface:
		return v.IsNil() || storableValue(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && !storableValue(v.Field(i)) {
				return false
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if !storableValue(v.Index(i)) {
				return false
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if !storableValue(it.Key()) || !storableValue(it.Value()) {
				return false
			}
		}
	}
	return true
}

var usernameRE = regexp.MustCompile(`^[a-z0-9_]{3,32}$`)

type registerRequest struct {
	Username    string `json:"username"`
	Email       string `json:"email"`
	Password    string `json:"password"`
	Role        string `json:"role"`
	DisplayName string `json:"display_name"`
}

type tokenResponse struct {
	AccessToken      string     `json:"access_token"`
	TokenType        string     `json:"token_type"`
	ExpiresIn        int        `json:"expires_in"`
	RefreshToken     string     `json:"refresh_token"`
	RefreshExpiresAt time.Time  `json:"refresh_expires_at"`
	User             store.User `json:"user"`
}

func (s *Server) register(ctx *fasthttp.RequestCtx) error {
	if err := s.authLimit.allow(s.clientIP(ctx)); err != nil {
		return err
	}
	var req registerRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	req.Username = strings.ToLower(strings.TrimSpace(req.Username))
	req.Email = strings.ToLower(strings.TrimSpace(req.Email))
	if !usernameRE.MatchString(req.Username) {
		return badRequest("username: 3-32 characters of a-z, 0-9 and _")
	}
	if a, err := mail.ParseAddress(req.Email); err != nil || a.Address != req.Email || len(req.Email) > 254 {
		return badRequest("email: not a valid address")
	}
	if n := utf8.RuneCountInString(req.Password); n < 8 || len(req.Password) > 72 {
		return badRequest("password: 8 to 72 bytes")
	}
	if utf8.RuneCountInString(req.DisplayName) > 64 {
		return badRequest("display_name: at most 64 characters")
	}
	switch req.Role {
	case "":
		req.Role = store.RoleViewer
	case store.RoleViewer, store.RoleStreamer:
	default:
		return badRequest("role: choose viewer or streamer; moderator and admin are granted by an admin")
	}
	if slices.Contains(s.conf.Admins, req.Username) {
		req.Role = store.RoleAdmin
	}
	hash, err := auth.HashPassword(req.Password, s.conf.PasswordCost)
	if err != nil {
		return err
	}
	u := store.User{Username: req.Username, Email: req.Email, PasswordHash: hash, Role: req.Role, DisplayName: req.DisplayName}
	if u.DisplayName == "" {
		u.DisplayName = u.Username
	}
	if err := s.store.CreateUser(ctx, &u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return Errorf(fasthttp.StatusConflict, "user_exists", "username or email is already registered")
		}
		return err
	}
	s.log.Info("user registered", "user", u.ID, "username", u.Username, "role", u.Role)
	return s.issue(ctx, fasthttp.StatusCreated, u)
}

// issue starts a session and answers the token pair.
func (s *Server) issue(ctx *fasthttp.RequestCtx, status int, u store.User) error {
	sess, refresh, err := s.store.CreateSession(ctx, u.ID, string(ctx.UserAgent()), s.clientIP(ctx), s.conf.RefreshTTL)
	if err != nil {
		return err
	}
	return s.respondTokens(ctx, status, u, sess, refresh)
}

func (s *Server) respondTokens(ctx *fasthttp.RequestCtx, status int, u store.User, sess store.Session, refresh string) error {
	access, _, err := s.tokens.Issue(u.ID, u.Role, sess.ID)
	if err != nil {
		return err
	}
	writeJSON(ctx, status, tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: int(s.tokens.TTL().Seconds()),
		RefreshToken: refresh, RefreshExpiresAt: sess.ExpiresAt, User: u})
	return nil
}

type loginRequest struct {
	Login    string `json:"login"`
	Password string `json:"password"`
}

func (s *Server) login(ctx *fasthttp.RequestCtx) error {
	if err := s.authLimit.allow(s.clientIP(ctx)); err != nil {
		return err
	}
	var req loginRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	wrong := Errorf(fasthttp.StatusUnauthorized, "bad_credentials", "wrong login or password")
	if req.Login == "" || req.Password == "" || len(req.Password) > 72 || len(req.Login) > 254 {
		return wrong
	}
	u, err := s.store.UserByLogin(ctx, strings.ToLower(strings.TrimSpace(req.Login)))
	if errors.Is(err, store.ErrNotFound) {
		// Spend the same bcrypt time as for a real account, so timing does
		// not tell which logins exist.
		_ = auth.CheckPassword(s.dummyHash, req.Password)
		return wrong
	}
	if err != nil {
		return err
	}
	if auth.CheckPassword(u.PasswordHash, req.Password) != nil {
		return wrong
	}
	return s.issue(ctx, fasthttp.StatusOK, u)
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (s *Server) refresh(ctx *fasthttp.RequestCtx) error {
	if err := s.authLimit.allow(s.clientIP(ctx)); err != nil {
		return err
	}
	var req refreshRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	sess, tok, err := s.store.RotateSession(ctx, req.RefreshToken, s.conf.RefreshTTL)
	switch {
	case errors.Is(err, store.ErrTokenReused):
		s.log.Warn("refresh token reused; session revoked", "session", strings.SplitN(req.RefreshToken, ".", 2)[0])
		return Errorf(fasthttp.StatusUnauthorized, "refresh_reused", "this refresh token was already used; the session is revoked, sign in again")
	case err != nil:
		return Errorf(fasthttp.StatusUnauthorized, "invalid_refresh", "refresh token is not valid; sign in again")
	}
	u, err := s.store.UserByID(ctx, sess.UserID)
	if err != nil {
		return err
	}
	return s.respondTokens(ctx, fasthttp.StatusOK, u, sess, tok)
}

func (s *Server) logout(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	if id.SessionID != "" {
		if err := s.store.RevokeSession(ctx, id.UserID, id.SessionID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

func (s *Server) listSessions(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	list, err := s.store.Sessions(ctx, id.UserID)
	if err != nil {
		return err
	}
	for i := range list {
		list[i].Current = list[i].ID == id.SessionID
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"sessions": list})
	return nil
}

func (s *Server) revokeSession(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	err := s.store.RevokeSession(ctx, id.UserID, Param(ctx, "id"))
	if errors.Is(err, store.ErrNotFound) {
		return notFound("session")
	}
	if err != nil {
		return err
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// Authenticate implements the realtime backend's token check and is what
// other control packages call to resolve a bearer token.
func (s *Server) Authenticate(token string) (Identity, error) { return s.verify(token) }
