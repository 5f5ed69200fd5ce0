package ledger

import (
	"context"
	"errors"

	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// PriceSourceKind says where the price a model is charged at comes from.
type PriceSourceKind string

// The places a price comes from.
const (
	PriceOwn     PriceSourceKind = "own"     // the model's own price row
	PriceBase    PriceSourceKind = "base"    // the price of the base model it derives from
	PriceDefault PriceSourceKind = "default" // the configured default price
)

// PriceSource is where a resolved price comes from: Kind, and for PriceBase
// the model whose price it is.
type PriceSource struct {
	Kind PriceSourceKind
	From string // PriceBase: the base model's id
}

// priceLookup reads one price row, or store.ErrNotFound.
type priceLookup func(ctx context.Context, id string) (store.ModelPrice, error)

// resolvePrice is the one rule prices are resolved by (Price, PriceSource
// and PriceTable all use it): the model's own price, else the first priced
// of pricing.BaseCandidates(model, base) (base being baseModelID, or the
// model's row's base when none is given), else def. known reports whether
// the model has a row of its own.
func resolvePrice(ctx context.Context, get priceLookup, def pricing.Price, model, baseModelID string) (price pricing.Price, src PriceSource, known bool, err error) {
	own, ownErr := get(ctx, model)
	switch {
	case ownErr == nil && own.Priced:
		return priceOf(own), PriceSource{Kind: PriceOwn}, true, nil
	case ownErr == nil:
		if baseModelID == "" {
			baseModelID = own.BaseModelID
		}
	case !errors.Is(ownErr, store.ErrNotFound):
		return pricing.Price{}, PriceSource{}, false, ownErr
	}
	for _, base := range pricing.BaseCandidates(model, baseModelID) {
		p, err := get(ctx, base)
		if err == nil && p.Priced {
			return priceOf(p), PriceSource{Kind: PriceBase, From: base}, ownErr == nil, nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return pricing.Price{}, PriceSource{}, false, err
		}
	}
	return def, PriceSource{Kind: PriceDefault}, ownErr == nil, nil
}

// PriceSource resolves a model's price as Price does, from the store (no
// cache, nothing recorded), and says where it comes from.
func (l *Ledger) PriceSource(ctx context.Context, model, baseModelID string) (pricing.Price, PriceSource, error) {
	price, src, _, err := resolvePrice(ctx, l.store.ModelPrice, l.cfg.DefaultPrice, model, baseModelID)
	return price, src, err
}

// PriceTable resolves prices by the ledger's rule over a snapshot of the
// price rows, for pages that show many models at once.
type PriceTable struct {
	rows map[string]store.ModelPrice
	def  pricing.Price
}

// PriceTable is a table over rows (as store.ListModelPrices gives them).
func (l *Ledger) PriceTable(rows []store.ModelPrice) *PriceTable {
	t := &PriceTable{rows: make(map[string]store.ModelPrice, len(rows)), def: l.cfg.DefaultPrice}
	for _, p := range rows {
		t.rows[p.ID] = p
	}
	return t
}

// Source is what model (deriving from baseModelID, if not empty) is
// charged, and where that price comes from.
func (t *PriceTable) Source(model, baseModelID string) (pricing.Price, PriceSource) {
	price, src, _, _ := resolvePrice(context.Background(), t.get, t.def, model, baseModelID)
	return price, src
}

func (t *PriceTable) get(_ context.Context, id string) (store.ModelPrice, error) {
	if p, ok := t.rows[id]; ok {
		return p, nil
	}
	return store.ModelPrice{}, store.ErrNotFound
}
