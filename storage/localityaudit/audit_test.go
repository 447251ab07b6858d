package localityaudit

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		sql      string
		offender string // "" when the statement passes
	}{
		{"pinned select", `SELECT id FROM users WHERE region = $1 AND id = $2`, ""},
		{"unpinned select", `SELECT id FROM users WHERE id = $1`, "users"},
		{"qualified pin", `SELECT u.id FROM users u WHERE u.region = $1 AND u.id = $2`, ""},
		{"pin under OR does not count", `SELECT id FROM users WHERE region = $1 OR id = $2`, "users"},
		{"pin under NOT does not count", `SELECT id FROM users WHERE NOT (region = $1) AND id = $2`, "users"},
		{"IN list", `SELECT id FROM users WHERE region IN ($1, $2) AND id = $3`, ""},
		{"ANY", `SELECT id FROM users WHERE region = ANY($1) AND id = $2`, ""},
		{"join pinned through a link", `SELECT p.first_name_enc FROM users u JOIN user_profiles p ON p.user_id = u.id AND p.region = u.region WHERE u.region = $1 AND u.id = $2`, ""},
		{"join leaves one side unpinned", `SELECT p.first_name_enc FROM users u JOIN user_profiles p ON p.user_id = u.id WHERE u.region = $1`, "user_profiles"},
		{"wrong alias pinned", `SELECT 1 FROM users u, user_profiles p WHERE p.region = $1 AND u.id = p.user_id`, "users"},
		{"insert with region", `INSERT INTO activity_logs (region, user_id, action) VALUES ($1, $2, $3)`, ""},
		{"insert without region", `INSERT INTO activity_logs (user_id, action) VALUES ($1, $2)`, "activity_logs"},
		{"update pinned", `UPDATE asset_balances SET available = available - $1 WHERE region = $2 AND user_id = $3`, ""},
		{"update unpinned", `UPDATE asset_balances SET available = 0 WHERE user_id = $1`, "asset_balances"},
		{"delete unpinned", `DELETE FROM user_sessions WHERE user_id = $1`, "user_sessions"},
		{"delete pinned", `DELETE FROM user_sessions WHERE region = $1 AND user_id = $2`, ""},
		{"subquery audited on its own", `SELECT id FROM users WHERE region = $1 AND id IN (SELECT user_id FROM wallets WHERE status = 'frozen')`, "wallets"},
		{"CTE audited", `WITH d AS (UPDATE asset_balances SET total = total - 1 WHERE region = $1 AND user_id = $2 RETURNING id) SELECT id FROM d`, ""},
		{"CTE unpinned", `WITH d AS (UPDATE asset_balances SET total = total - 1 WHERE user_id = $1 RETURNING id) SELECT id FROM d`, "asset_balances"},
		{"global table needs no pin", `SELECT user_id, home_region FROM phone_directory WHERE phone_bidx = $1`, ""},
		{"not a table we know", `SELECT version()`, ""},
	}
	for _, tt := range tests {
		rep := Check([]string{tt.sql}, nil)
		if len(rep.Unparsed) > 0 {
			t.Errorf("%s: unparsed", tt.name)
			continue
		}
		got := ""
		if len(rep.Offenders) > 0 {
			got = rep.Offenders[0].Table
		}
		if got != tt.offender {
			t.Errorf("%s: offender %q, want %q (%v)", tt.name, got, tt.offender, rep.Offenders)
		}
	}
}

func TestExceptionsAndGarbage(t *testing.T) {
	tagged := `/* locality-exception: ops_scan */ SELECT id FROM users WHERE status = 'suspended'`
	rep := Check([]string{tagged}, map[string]string{"ops_scan": "an operator report"})
	if len(rep.Offenders) != 0 || rep.Excepted["ops_scan"] != 1 {
		t.Fatalf("declared exception: %+v", rep)
	}
	rep = Check([]string{tagged}, nil)
	if len(rep.UnknownExceptions) != 1 || rep.UnknownExceptions[0] != "ops_scan" {
		t.Fatalf("undeclared exception accepted: %+v", rep)
	}
	rep = Check([]string{"SELEKT nonsense FROM"}, nil)
	if len(rep.Unparsed) != 1 {
		t.Fatalf("garbage not reported: %+v", rep)
	}
	if !strings.Contains(Offender{Table: "users", Statement: "SELECT\n  1"}.String(), "users: SELECT 1") {
		t.Fatal("offender formatting")
	}
}
