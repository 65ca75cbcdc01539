package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"
)

// Error is an API error: a stable code, a message a person can act on and
// an HTTP status. Handlers return it; the router writes it as
// {"error":{"code":"...","message":"..."}}.
type Error struct {
	Status  int
	code    string
	Message string
	// RetryAfter, when set, becomes the Retry-After header (seconds).
	RetryAfter int
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Code is the error's stable code (realtime.CodedError).
func (e *Error) Code() string { return e.code }

// Errorf builds an API error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, code: code, Message: fmt.Sprintf(format, args...)}
}

// Common API errors.
var (
	// ErrUnauthorized: no valid access token.
	ErrUnauthorized = &Error{Status: fasthttp.StatusUnauthorized, code: "unauthorized", Message: "sign in first: send Authorization: Bearer ACCESS_TOKEN"}
	// ErrForbidden: the caller may not do this.
	ErrForbidden = &Error{Status: fasthttp.StatusForbidden, code: "forbidden", Message: "you are not allowed to do this"}
	// ErrNotFoundAPI: no such resource.
	ErrNotFoundAPI = &Error{Status: fasthttp.StatusNotFound, code: "not_found", Message: "not found"}
)

func badRequest(format string, args ...any) *Error {
	return Errorf(fasthttp.StatusBadRequest, "invalid_request", format, args...)
}

func notFound(what string) *Error {
	return Errorf(fasthttp.StatusNotFound, "not_found", "%s not found", what)
}

// WriteError writes err as a JSON API error; errors that are not *Error
// become 500 without leaking their text.
func WriteError(ctx *fasthttp.RequestCtx, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: fasthttp.StatusInternalServerError, code: "internal", Message: "internal error; it was logged"}
	}
	if e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(ctx, e.Status, map[string]any{"error": map[string]string{"code": e.code, "message": e.Message}})
}

// WriteJSON writes v as a JSON response with status.
func WriteJSON(ctx *fasthttp.RequestCtx, status int, v any) { writeJSON(ctx, status, v) }

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"response encoding failed"}}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}
