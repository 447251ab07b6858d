package storage

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// FuzzDecodeCursor: a cursor is opaque to clients, so anything may come back. Whatever decodes
// must be exactly what Encode makes of it (no two strings name one position).
func FuzzDecodeCursor(f *testing.F) {
	f.Add(Cursor{CreatedAt: time.UnixMicro(1_700_000_000_123_456), ID: uuid.MustParse("6f1d6a0e-3b1f-4c55-9a57-7a5e1c0d2a77")}.Encode())
	f.Add(Cursor{}.Encode())
	for _, s := range []string{"", "AQ", "AAAA", "====", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "_-_-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeCursor(s)
		if err != nil {
			return
		}
		if c.Encode() != s {
			t.Fatalf("DecodeCursor(%q) = %+v, which encodes as %q", s, c, c.Encode())
		}
	})
}
