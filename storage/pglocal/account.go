package pglocal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// account is the unprivileged user the server runs as when the launcher itself runs as root.
// A nil *account means "run as the current user".
type account struct {
	name     string
	uid, gid uint32
}

// unprivilegedAccount picks who runs PostgreSQL. PostgreSQL refuses to start as root, and
// developer containers and CI run as root, so root drops to the named account, else the
// "postgres" system user that a PostgreSQL package creates, else "nobody".
func unprivilegedAccount(name string) (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	candidates := []string{"postgres", "nobody"}
	if name != "" {
		candidates = []string{name}
	}
	for _, c := range candidates {
		u, err := user.Lookup(c)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &account{name: c, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("pglocal: running as root, and PostgreSQL refuses to run as root, but none of the accounts %v exists; "+
		"create one (useradd --system postgres) or set DATABASE_URL", candidates)
}

// command builds a command that runs as a (when non-nil). The environment is the caller's minus
// the libpq/PGDATA variables that would redirect pg_ctl, and with C messages so that the log
// lines the launcher looks for are in English.
func (a *account) command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	env := []string{"LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	if a != nil {
		// Setgroups with an empty list drops root's supplementary groups too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: a.uid, Gid: a.gid}}
		// The caller's working directory may be unreachable for the account (/root/...).
		cmd.Dir = "/"
	}
	return cmd
}

// chown gives path to a; a no-op when the server runs as the current user.
func (a *account) chown(path string) error {
	if a == nil {
		return nil
	}
	return os.Lchown(path, int(a.uid), int(a.gid))
}

// blocker returns the first existing directory on the way to path (path included) that a
// cannot search, or "" when every one can be traversed. It reads mode bits only; ACLs that
// would grant access are ignored, which errs towards relocating.
func (a *account) blocker(path string) string {
	if a == nil {
		return ""
	}
	var dirs []string
	for p := path; ; p = filepath.Dir(p) {
		dirs = append(dirs, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		fi, err := os.Stat(dirs[i])
		if errors.Is(err, fs.ErrNotExist) {
			return "" // MkdirAll creates the rest
		}
		if err != nil || !a.canSearch(fi) {
			return dirs[i]
		}
	}
	return ""
}

func (a *account) canSearch(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == a.uid:
		return perm&0o100 != 0
	case st.Gid == a.gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// relocationBases are where data goes when root asks for a data directory that the
// unprivileged account cannot reach (a clone under /root, or t.TempDir()). /var/tmp survives
// reboots, which keeps development data; the temp dir is the fallback.
func relocationBases() []string {
	return []string{"/var/tmp", os.TempDir()}
}

// resolveDataDir returns the directory the cluster really lives in. It is the requested
// directory, unless running as root and the account cannot reach it (a clone under /root, or
// t.TempDir()): then the cluster lives under a relocation base, named after a hash of the
// requested path, and the requested path becomes a symlink to it so that the next start finds
// the same data. A populated directory is never moved; that is an error instead.
func resolveDataDir(requested string, a *account) (dir string, relocated bool, err error) {
	abs, err := filepath.Abs(requested)
	if err != nil {
		return "", false, fmt.Errorf("pglocal: data directory %q: %w", requested, err)
	}
	fi, err := os.Lstat(abs)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			return "", false, fmt.Errorf("pglocal: data directory %s: %w", abs, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(abs), target)
		}
		if b := a.blocker(filepath.Dir(target)); b != "" {
			return "", false, unreachable(target, b, a)
		}
		// A relocated directory under /var/tmp or /tmp may have been cleaned away; recreate it
		// (and initialise afresh) rather than fail on a dangling link.
		if err := mkdirForAccount(target, a); err != nil {
			return "", false, err
		}
		return target, true, nil
	case err == nil && fi.IsDir():
		b := a.blocker(filepath.Dir(abs))
		if b == "" {
			if isEmptyDir(abs) {
				// An empty directory made by the caller (os.MkdirTemp) still belongs to root.
				if err := mkdirForAccount(abs, a); err != nil {
					return "", false, err
				}
			}
			return abs, false, nil
		}
		if !isEmptyDir(abs) {
			return "", false, unreachable(abs, b, a)
		}
		if err := os.Remove(abs); err != nil {
			return "", false, fmt.Errorf("pglocal: replacing empty data directory with a link: %w", err)
		}
	case err == nil:
		return "", false, fmt.Errorf("pglocal: data directory %s exists and is not a directory", abs)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			return "", false, fmt.Errorf("pglocal: creating parent of data directory: %w", err)
		}
		if a.blocker(filepath.Dir(abs)) == "" {
			if err := mkdirForAccount(abs, a); err != nil {
				return "", false, err
			}
			return abs, false, nil
		}
	default:
		return "", false, fmt.Errorf("pglocal: data directory %s: %w", abs, err)
	}

	// Only unreachable, empty or missing directories get here.
	target, err := relocate(abs, a)
	if err != nil {
		return "", false, err
	}
	if err := os.Symlink(target, abs); err != nil {
		return "", false, fmt.Errorf("pglocal: linking data directory to %s: %w", target, err)
	}
	return target, true, nil
}

func unreachable(dir, blocker string, a *account) error {
	return fmt.Errorf("pglocal: PostgreSQL must run as user %q (it refuses root), but %q cannot reach data directory %s "+
		"because %s is not searchable by it; move the data directory, run `chmod o+x %s`, or set DATABASE_URL",
		a.name, a.name, dir, blocker, blocker)
}

func isEmptyDir(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) == 0
}

// relocate makes the directory under the first usable relocation base for the cluster
// requested at abs.
func relocate(abs string, a *account) (string, error) {
	sum := sha256.Sum256([]byte(abs))
	name := "7awel-pglocal"
	for _, base := range relocationBases() {
		if a.blocker(base) != "" {
			continue
		}
		root := filepath.Join(base, name)
		if err := os.MkdirAll(root, 0o755); err != nil {
			continue
		}
		// MkdirAll is subject to the umask; the account must be able to pass through.
		if err := os.Chmod(root, 0o755); err != nil {
			continue
		}
		target := filepath.Join(root, hex.EncodeToString(sum[:8]))
		if err := mkdirForAccount(target, a); err != nil {
			return "", err
		}
		return target, nil
	}
	return "", fmt.Errorf("pglocal: data directory %s is not reachable by user %q and no relocation directory in %v is either; "+
		"choose a data directory outside private (0700) directories or set DATABASE_URL", abs, a.name, relocationBases())
}

// mkdirForAccount creates dir (0700, as PostgreSQL demands) owned by the account.
func mkdirForAccount(dir string, a *account) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("pglocal: creating %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pglocal: creating %s: %w", dir, err)
	}
	if !ownedBy(dir, a) {
		if err := a.chown(dir); err != nil {
			return fmt.Errorf("pglocal: giving %s to %s: %w", dir, a.name, err)
		}
	}
	return nil
}

// ownedBy reports whether dir belongs to a (always true when running as oneself).
func ownedBy(dir string, a *account) bool {
	if a == nil {
		return true
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == a.uid
}
