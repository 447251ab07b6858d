package pglocal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNoBinaries is returned (wrapped, with installation advice) when initdb, pg_ctl and
// postgres cannot be found together in one directory.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")

// debianBinGlob is where Debian and Ubuntu install the server binaries; they are not on PATH
// there, which is why PATH alone is not enough.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// binaries are the absolute paths of the server programs the launcher runs.
type binaries struct {
	dir      string
	initdb   string
	pgCtl    string
	postgres string
}

// findBinaries looks in binDir when it is set, else on pathEnv (a PATH value) and then in the
// directories matching globs, highest PostgreSQL version first. The three programs must sit in
// one directory: mixing major versions would make initdb and postgres disagree.
func findBinaries(binDir, pathEnv string, globs ...string) (binaries, error) {
	var searched []string
	try := func(dir string) (binaries, bool) {
		if dir == "" {
			return binaries{}, false
		}
		searched = append(searched, dir)
		b := binaries{
			dir:      dir,
			initdb:   filepath.Join(dir, "initdb"),
			pgCtl:    filepath.Join(dir, "pg_ctl"),
			postgres: filepath.Join(dir, "postgres"),
		}
		for _, p := range []*string{&b.initdb, &b.pgCtl, &b.postgres} {
			if !isExecutable(*p) {
				return binaries{}, false
			}
			// Distributions link these into PATH (/usr/local/bin/pg_ctl -> .../15/bin/pg_ctl);
			// the real location is what logs and errors should name.
			if real, err := filepath.EvalSymlinks(*p); err == nil {
				*p = real
			}
		}
		b.dir = filepath.Dir(b.pgCtl)
		return b, true
	}

	if binDir != "" {
		if b, ok := try(binDir); ok {
			return b, nil
		}
		return binaries{}, noBinaries(searched)
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if b, ok := try(dir); ok {
			return b, nil
		}
	}
	for _, g := range globs {
		dirs, _ := filepath.Glob(g) // the only error is a malformed pattern, and ours are constants
		sortByVersionDesc(dirs)
		for _, dir := range dirs {
			if b, ok := try(dir); ok {
				return b, nil
			}
		}
	}
	return binaries{}, noBinaries(append(searched, globs...))
}

func noBinaries(searched []string) error {
	return fmt.Errorf("%w (searched %s); install PostgreSQL (Debian/Ubuntu: apt-get install postgresql, "+
		"macOS: brew install postgresql) or set DATABASE_URL to use an existing server",
		ErrNoBinaries, strings.Join(searched, ", "))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// sortByVersionDesc orders .../<version>/bin directories by version, numerically, so that 16
// beats 9.6 (which a string sort would get wrong).
func sortByVersionDesc(dirs []string) {
	version := func(dir string) []int {
		name := filepath.Base(filepath.Dir(dir))
		var v []int
		for _, part := range strings.Split(name, ".") {
			n, err := strconv.Atoi(part)
			if err != nil {
				n = -1
			}
			v = append(v, n)
		}
		return v
	}
	sort.SliceStable(dirs, func(i, j int) bool {
		a, b := version(dirs[i]), version(dirs[j])
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] > b[k]
			}
		}
		return len(a) > len(b)
	})
}
