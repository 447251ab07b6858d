package server

import (
	"context"

	"github.com/google/uuid"
)

// Principal is the authenticated caller, from a verified access token. Region is the caller's
// home region: every statement on the caller's rows pins it (design.md, Regions and PII).
type Principal struct {
	UserID    uuid.UUID
	SessionID uuid.UUID
	Region    string
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom returns the caller of an authenticated route. Routes behind the auth middleware
// always have one; the bool is false elsewhere.
func principalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
