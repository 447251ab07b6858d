package driver

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// bar is a progress bar for setup and teardown. On a terminal it redraws one line; elsewhere
// (make, CI logs) it prints a line per tenth, so logs stay readable.
type bar struct {
	mu          sync.Mutex
	w           io.Writer
	tty         bool
	label       string
	total, done int
	shown       int
}

func newBar(w io.Writer, label string, total int) *bar {
	b := &bar{w: w, label: label, total: total, shown: -1, tty: isTTY(w)}
	b.draw()
	return b
}

func (b *bar) add(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	b.draw()
}

// draw prints when the bar moved by a notch: 40 notches on a terminal, 10 in a log.
func (b *bar) draw() {
	if b.total == 0 {
		return
	}
	notches := 10
	if b.tty {
		notches = 40
	}
	n := b.done * notches / b.total
	if n == b.shown {
		return
	}
	b.shown = n
	line := fmt.Sprintf("%s [%s%s] %d/%d", b.label, strings.Repeat("#", n), strings.Repeat(".", notches-n), b.done, b.total)
	if b.tty {
		fmt.Fprint(b.w, "\r"+line)
	} else {
		fmt.Fprintln(b.w, line)
	}
}

func (b *bar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tty && b.total > 0 {
		fmt.Fprintln(b.w)
	}
}

// isTTY says whether w is a terminal, where a line can be redrawn with \r.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
