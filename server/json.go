package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxBodyBytes is the largest request body accepted (api.md, Conventions).
const maxBodyBytes = 64 << 10

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only our own types are encoded; failing here is a bug worth a 500, not a panic.
		http.Error(w, `{"code":"internal_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// respond writes a JSON success body.
func respond(w http.ResponseWriter, status int, v any) {
	writeJSON(w, status, "application/json", v)
}

// decodeJSON reads a request body into dst strictly: JSON only, at most 64 KiB, no unknown
// fields, exactly one value. Every failure is a 400 (413 for size) with a stable code; the
// decoder's message is shown since it names a field or offset, never a value.
func decodeJSON(r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Send the body as application/json.")
	}
	body := http.MaxBytesReader(nil, r.Body, maxBodyBytes)
	return decodeStrict(body, dst)
}

// decodeStrict is decodeJSON's parser, on any reader (fuzzed directly).
func decodeStrict(body io.Reader, dst any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return jsonError(err)
		}
		return Errorf(http.StatusBadRequest, "malformed_json", "The body must hold exactly one JSON value.")
	}
	return nil
}

func jsonError(err error) error {
	var (
		tooBig    *http.MaxBytesError
		syntax    *json.SyntaxError
		typeError *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "The body is larger than %d bytes.", maxBodyBytes)
	case errors.Is(err, io.EOF):
		return Errorf(http.StatusBadRequest, "malformed_json", "The body is empty; send a JSON object.")
	case errors.As(err, &syntax):
		return Errorf(http.StatusBadRequest, "malformed_json", "The body is not valid JSON (at byte %d).", syntax.Offset)
	case errors.As(err, &typeError):
		field := typeError.Field
		if field == "" {
			return Errorf(http.StatusBadRequest, "malformed_json", "The body must be a JSON object.")
		}
		return &Error{Status: http.StatusBadRequest, Code: "malformed_json",
			Detail: fmt.Sprintf("Field %q has the wrong type (want %s).", field, typeError.Type),
			Fields: map[string]string{field: "wrong type, want " + typeError.Type.String()}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &Error{Status: http.StatusBadRequest, Code: "unknown_field",
			Detail: fmt.Sprintf("Field %q is not accepted here.", field),
			Fields: map[string]string{field: "unknown field"}}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, "malformed_json", "The body ends in the middle of a JSON value.")
	}
	return Errorf(http.StatusBadRequest, "malformed_json", "The body could not be read as JSON.")
}
