package ledger

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/pricing"
	"github.com/openwebui-monitor/owmon/internal/store"
	"github.com/openwebui-monitor/owmon/internal/store/postgres"
	"github.com/openwebui-monitor/owmon/internal/store/sqlite"
	"github.com/openwebui-monitor/owmon/internal/testpg"
)

// TestPriceSource: PriceSource, the PriceTable and Price agree on every
// kind of model, on both backends, and say where each price comes from.
func TestPriceSource(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			var st store.Store
			var err error
			if kind == "sqlite" {
				st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
			} else {
				st, err = postgres.Open(ctx, testpg.DSN(t))
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			def := pricing.Price{Input: money.Units(60), Output: money.Units(60), PerMessage: -1}
			l := New(st, Config{DefaultPrice: def, PriceTTL: time.Hour})

			gpt := pricing.Price{Input: money.Units(2), Output: money.Units(8), PerMessage: -1}
			flat := pricing.Price{PerMessage: money.Units(1)}
			own := pricing.Price{Input: money.Units(7), Output: money.Units(9), PerMessage: -1}
			for id, p := range map[string]pricing.Price{"gpt-4o": gpt, "flat": flat} {
				if _, err := st.PutModelPrice(ctx, store.ModelPrice{ID: id, Name: id, Input: p.Input, Output: p.Output, PerMessage: p.PerMessage}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := st.PutModelPrice(ctx, store.ModelPrice{ID: "mine", Name: "mine", BaseModelID: "gpt-4o", Input: own.Input, Output: own.Output, PerMessage: -1}); err != nil {
				t.Fatal(err)
			}
			for id, base := range map[string]string{"helper": "gpt-4o", "orphan": "nobody", "recorded": ""} {
				if err := st.RecordModel(ctx, id, id, base); err != nil {
					t.Fatal(err)
				}
			}

			cases := []struct {
				model, base string
				price       pricing.Price
				src         PriceSource
			}{
				{"gpt-4o", "", gpt, PriceSource{Kind: PriceOwn}},
				{"mine", "gpt-4o", own, PriceSource{Kind: PriceOwn}},              // its own price wins over its base
				{"helper", "", gpt, PriceSource{Kind: PriceBase, From: "gpt-4o"}}, // the base from its row
				{"workspace", "flat", flat, PriceSource{Kind: PriceBase, From: "flat"}},
				{"my_pipe.gpt-4o", "", gpt, PriceSource{Kind: PriceBase, From: "gpt-4o"}}, // the pipe suffix
				{"orphan", "", def, PriceSource{Kind: PriceDefault}},                      // its base has no price
				{"recorded", "", def, PriceSource{Kind: PriceDefault}},
				{"unknown", "", def, PriceSource{Kind: PriceDefault}},
				{"unknown.flat", "nobody", flat, PriceSource{Kind: PriceBase, From: "flat"}}, // base unpriced, then the suffix
			}
			rows, err := st.ListModelPrices(ctx)
			if err != nil {
				t.Fatal(err)
			}
			table := l.PriceTable(rows)
			for _, c := range cases {
				p, src, err := l.PriceSource(ctx, c.model, c.base)
				if err != nil || p != c.price || src != c.src {
					t.Errorf("PriceSource(%s, %q) = %+v %+v %v, want %+v %+v", c.model, c.base, p, src, err, c.price, c.src)
				}
				if p, src := table.Source(c.model, c.base); p != c.price || src != c.src {
					t.Errorf("table.Source(%s, %q) = %+v %+v, want %+v %+v", c.model, c.base, p, src, c.price, c.src)
				}
				if p, err := l.Price(ctx, c.model, c.base); err != nil || p != c.price {
					t.Errorf("Price(%s, %q) = %+v %v, want %+v", c.model, c.base, p, err, c.price)
				}
			}
			// PriceSource records nothing; Price records an unknown model
			// charged the default, as before.
			if _, err := st.ModelPrice(ctx, "workspace"); err == nil {
				t.Error("a model priced by its base was recorded")
			}
			if _, _, err := l.PriceSource(ctx, "never-charged", ""); err != nil {
				t.Fatal(err)
			}
			if _, err := st.ModelPrice(ctx, "never-charged"); err == nil {
				t.Error("PriceSource recorded a model")
			}
			if r, err := st.ModelPrice(ctx, "unknown"); err != nil || r.Priced {
				t.Errorf("Price did not record the unknown model: %+v %v", r, err)
			}
		})
	}
}
