package driver

import (
	"context"
	"fmt"
	"net/http"

	"github.com/shopspring/decimal"
)

// teardown learns the outcome of every transfer that had none, reads every balance again
// and checks the money.
func (r *runner) teardown(ctx context.Context, rep *Report, st *stats, before []map[string]decimal.Decimal, fresh []bool) {
	c := &rep.Conservation
	if len(r.all) == 0 || r.p.def.Amount == "" {
		return
	}
	c.Checked = true
	var fail []string

	// 1. Transfers with no known outcome are sent again with the same reference: the server
	// answers with the stored transaction (it had committed), creates it now (it had not),
	// or refuses it; any of these is an outcome.
	for _, pd := range st.pending {
		res, err := r.sc.Send(ctx, r.all[pd.from].Token, pd.t)
		if err != nil || res.Status >= 500 {
			c.Unresolved++
			continue
		}
		c.Resolved++
		if res.Status == http.StatusCreated || (res.Status == http.StatusOK && res.Replayed()) {
			tx, err := ParseTransaction(res.Body)
			if err != nil || tx.Reference != pd.t.Reference {
				c.Unresolved++
				continue
			}
			st.moves = append(st.moves, move{pd.from, pd.to, pd.asset, r.amount, tx.Fee})
			st.committed++
			rep.Committed++
		}
	}

	// 2. Funding: a user signed up by this run starts with exactly the funding (payers) or
	// nothing (merchants), or cash-in is broken and every later number is suspect.
	funding := decimal.Zero
	if r.p.def.Funding != "" {
		funding = decimal.RequireFromString(r.p.def.Funding)
	}
	for i, isFresh := range fresh {
		if !isFresh {
			continue
		}
		want := funding
		if i >= len(r.payers) {
			want = decimal.Zero
		}
		c.FundingChecked++
		for _, a := range r.assets {
			if got := before[i][a]; !got.Equal(want) {
				c.FundingMismatches = appendCapped(c.FundingMismatches, fmt.Sprintf("user %d %s: %s after setup, want %s", i, a, got, want))
			}
		}
	}

	after, err := r.readBalances(ctx, "teardown: balances")
	if err != nil {
		rep.Failures = append(rep.Failures, "teardown: "+err.Error())
		return
	}

	// 3. Per asset: what the users had, minus the fees they paid, is what they have.
	fees := make([]decimal.Decimal, len(r.assets))
	for _, m := range st.moves {
		fees[m.asset] = fees[m.asset].Add(m.fee)
	}
	sumOK := true
	for ai, a := range r.assets {
		var b, f decimal.Decimal
		for i := range r.all {
			b = b.Add(before[i][a])
			f = f.Add(after[i][a])
		}
		ok := b.Sub(fees[ai]).Equal(f)
		sumOK = sumOK && ok
		c.Assets = append(c.Assets, AssetBalance{Asset: a, Before: b.StringFixed(8), After: f.StringFixed(8),
			Fees: fees[ai].StringFixed(8), OK: ok})
	}

	// 4. Per user, when every outcome is known: each balance is the one before, minus what
	// the user paid (amount and fee), plus what they received.
	if c.Unresolved == 0 {
		c.PerUser = true
		want := make([][]decimal.Decimal, len(r.all))
		for i := range r.all {
			want[i] = make([]decimal.Decimal, len(r.assets))
			for ai, a := range r.assets {
				want[i][ai] = before[i][a]
			}
		}
		for _, m := range st.moves {
			want[m.from][m.asset] = want[m.from][m.asset].Sub(m.amount).Sub(m.fee)
			want[m.to][m.asset] = want[m.to][m.asset].Add(m.amount)
		}
		for i := range r.all {
			for ai, a := range r.assets {
				if !want[i][ai].Equal(after[i][a]) {
					c.PerUserMismatches = appendCapped(c.PerUserMismatches,
						fmt.Sprintf("user %d %s: balance %s, the committed transfers make it %s", i, a, after[i][a], want[i][ai]))
				}
			}
		}
	}
	c.OK = sumOK && len(c.PerUserMismatches) == 0 && len(c.FundingMismatches) == 0
	if c.Unresolved > 0 {
		fail = append(fail, fmt.Sprintf("%d transfers have no known outcome even after asking again", c.Unresolved))
	}
	rep.Failures = append(rep.Failures, fail...)
}

const maxListed = 10

func appendCapped(list []string, s string) []string {
	if len(list) == maxListed {
		return append(list, "…")
	}
	if len(list) > maxListed {
		return list
	}
	return append(list, s)
}
