// Package migrations holds the SQL schema of 7awel, embedded in the binary, and the one
// declaration of where each table lives on a multi-region CockroachDB.
//
// The top-level *.sql files are the shared set: portable SQL that PostgreSQL 15+ and CockroachDB
// both run. cockroach/*.sql is the CockroachDB-only overlay (table localities, row-level TTL,
// hash-sharded indexes), generated from Tables by `go test ./migrations -update` and applied after
// the shared set with its own version table. This package does not run migrations: storage does.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed *.sql cockroach/*.sql
var files embed.FS

// Shared returns the migrations both engines run.
func Shared() fs.FS { return files }

// Cockroach returns the CockroachDB-only overlay.
func Cockroach() fs.FS {
	sub, err := fs.Sub(files, "cockroach")
	if err != nil {
		panic(err) // the directory is embedded at build time; it cannot be missing
	}
	return sub
}
