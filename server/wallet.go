package server

import (
	"net/http"
	"sort"
	"time"

	"github.com/7awel/wallet/storage"
)

// moneyAPI holds what the money endpoints keep between requests: the asset and rate caches
// (one minute, as the plan says) and the fee schedule. It is built once with the routes, so
// the Server itself carries no money state.
type moneyAPI struct {
	s      *Server
	assets *storage.AssetCache
	rates  storage.RateProvider
	// fees is the fee schedule (Config.Fees); nil charges nothing, the default.
	fees storage.FeeSchedule
}

func (s *Server) newMoneyAPI() *moneyAPI {
	return &moneyAPI{
		s:      s,
		assets: storage.NewAssetCache(s.db, time.Minute),
		rates:  storage.NewTableRates(s.db, time.Minute),
		fees:   s.cfg.Fees,
	}
}

type assetJSON struct {
	Symbol    string  `json:"symbol"`
	Name      string  `json:"name"`
	AssetType string  `json:"asset_type"`
	Decimals  int     `json:"decimals"`
	MinAmount string  `json:"min_amount"`
	MaxAmount string  `json:"max_amount"`
	Network   *string `json:"network"`
}

// listAssets is GET /assets (no auth).
func (m *moneyAPI) listAssets(w http.ResponseWriter, r *http.Request) error {
	list, err := m.assets.Active(r.Context())
	if err != nil {
		return err
	}
	items := make([]assetJSON, 0, len(list))
	for _, a := range list {
		j := assetJSON{Symbol: a.Symbol, Name: a.Name, AssetType: a.AssetType, Decimals: a.Decimals,
			MinAmount: a.MinAmount, MaxAmount: a.MaxAmount}
		if a.Network != "" {
			n := a.Network
			j.Network = &n
		}
		items = append(items, j)
	}
	respond(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

type balanceJSON struct {
	Asset     string    `json:"asset"`
	Total     string    `json:"total"`
	Available string    `json:"available"`
	Pending   string    `json:"pending"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toBalanceJSON(b storage.Balance) balanceJSON {
	return balanceJSON{Asset: b.Asset, Total: storage.FormatAmount(b.Total, b.Decimals),
		Available: storage.FormatAmount(b.Available, b.Decimals), Pending: storage.FormatAmount(b.Pending, b.Decimals),
		UpdatedAt: b.UpdatedAt.UTC()}
}

// balance is GET /wallet/balance: the wallet's primary asset.
func (m *moneyAPI) balance(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	wallet, err := m.s.db.GetWallet(r.Context(), p.UserID, p.Region)
	if err != nil {
		return err
	}
	b, ok := wallet.Balance(wallet.PrimaryAsset)
	if !ok {
		// A primary asset without a balance row holds nothing yet.
		b = storage.Balance{Asset: wallet.PrimaryAsset, Decimals: 2}
		if a, err := m.assets.Get(r.Context(), wallet.PrimaryAsset); err == nil {
			b.Decimals = a.Decimals
		}
	}
	respond(w, http.StatusOK, toBalanceJSON(b))
	return nil
}

// balances is GET /wallet/balances.
func (m *moneyAPI) balances(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	wallet, err := m.s.db.GetWallet(r.Context(), p.UserID, p.Region)
	if err != nil {
		return err
	}
	out := make([]balanceJSON, 0, len(wallet.Balances))
	for _, b := range wallet.Balances {
		out = append(out, toBalanceJSON(b))
	}
	respond(w, http.StatusOK, map[string]any{"wallet_id": wallet.ID, "balances": out})
	return nil
}

// exchangeRates is GET /exchange-rates?base=USD: every active asset in units of one base,
// derived through USD.
func (m *moneyAPI) exchangeRates(w http.ResponseWriter, r *http.Request) error {
	base := r.URL.Query().Get("base")
	if base == "" {
		base = storage.RateBase
	}
	if _, err := m.assets.Get(r.Context(), base); err != nil {
		return err
	}
	rates, err := m.rates.Rates(r.Context())
	if err != nil {
		return err
	}
	symbols := make([]string, 0, len(rates.PerBase))
	for sym := range rates.PerBase {
		symbols = append(symbols, sym)
	}
	sort.Strings(symbols)
	out := make(map[string]string, len(symbols))
	for _, sym := range symbols {
		if sym == base {
			continue
		}
		rate, err := rates.Cross(base, sym)
		if err != nil {
			return err
		}
		out[sym] = rate.String()
	}
	respond(w, http.StatusOK, map[string]any{"base": base, "rates": out, "as_of": rates.AsOf.UTC()})
	return nil
}
