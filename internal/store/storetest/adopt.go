package storetest

// The provider meter adopts the front's pending holds (AdoptHold), a new
// chat's hold gets its chat id (RekeyHold), and a charge from another path
// of a key the provider meter owns is covered.

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openwebui-monitor/owmon/internal/money"
	"github.com/openwebui-monitor/owmon/internal/store"
)

// hold places a pending record of user (ReserveAlways) and returns it.
func hold(t *testing.T, s store.Store, user, key, source, chat, msg string, cost money.Amount) store.Record {
	t.Helper()
	exp := time.Now().Add(time.Hour)
	res, err := s.Reserve(t.Context(), store.Reservation{Rule: store.ReserveAlways, Record: store.Record{
		UserID: user, Key: key, Source: source, ChatID: chat, MessageID: msg, Model: "gpt", Nickname: "nick",
		Purpose: "front", Cost: cost, ExpiresAt: &exp,
	}})
	if err != nil || !res.Placed {
		t.Fatalf("Reserve(%s, %q): %+v, %v", user, key, res, err)
	}
	return res.Record
}

func adopt(t *testing.T, s store.Store, a store.Adoption) (store.Record, bool) {
	t.Helper()
	rec, ok, err := s.AdoptHold(t.Context(), a)
	if err != nil {
		t.Fatalf("AdoptHold(%+v): %v", a, err)
	}
	if !ok && rec != (store.Record{}) {
		t.Fatalf("AdoptHold(%+v) adopted nothing but returned %+v", a, rec)
	}
	return rec, ok
}

// wantAdopted checks that a adopts h, which becomes the provider meter's
// with nothing else changed but the purpose (when given).
func wantAdopted(t *testing.T, s store.Store, a store.Adoption, h store.Record) store.Record {
	t.Helper()
	got, ok := adopt(t, s, a)
	if !ok {
		t.Fatalf("AdoptHold(%+v) adopted nothing, want %q", a, h.Key)
	}
	want := h
	want.Source = store.SourceProvider
	if a.Purpose != "" {
		want.Purpose = a.Purpose
	}
	sameRecord(t, "adopted record", got, want)
	sameRecord(t, "RecordByKey after adoption", recordByKey(t, s, want.Key), want)
	return got
}

func wantNoAdoption(t *testing.T, s store.Store, a store.Adoption) {
	t.Helper()
	if rec, ok := adopt(t, s, a); ok {
		t.Fatalf("AdoptHold(%+v) adopted %+v, want nothing", a, rec)
	}
}

func testAdoptByKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	newUser(t, s, "u2", units(10))
	h := hold(t, s, "u1", "c1/m1", store.SourceEdge, "c1", "m1", units(2))
	other := hold(t, s, "u2", "c2/m2", store.SourceFunction, "c2", "m2", units(1))
	own := hold(t, s, "u1", "c1/m3", store.SourceProvider, "c1", "m3", units(1))
	if _, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "c1/done", Source: store.SourceEdge, ChatID: "c1", MessageID: "done", Cost: units(1)}); err != nil {
		t.Fatal(err)
	}

	if _, _, err := s.AdoptHold(ctx, store.Adoption{Key: "c1/m1"}); err == nil {
		t.Fatal("AdoptHold without a user id: no error")
	}
	wantNoAdoption(t, s, store.Adoption{UserID: "u2", Key: "c1/m1"}) // another user's hold
	wantNoAdoption(t, s, store.Adoption{UserID: "u1", Key: "c2/m2"})
	wantNoAdoption(t, s, store.Adoption{UserID: "u1", Key: "c1/m3"})   // the provider's own
	wantNoAdoption(t, s, store.Adoption{UserID: "u1", Key: "c1/done"}) // final
	wantNoAdoption(t, s, store.Adoption{UserID: "u1", Key: "nothing"})
	// With a key, only that key: the chat's hold is not taken instead.
	wantNoAdoption(t, s, store.Adoption{UserID: "u1", Key: "nothing", ChatID: "c1"})

	wantAdopted(t, s, store.Adoption{UserID: "u1", Key: "c1/m1", ChatID: "c1", Purpose: "chat"}, h)
	wantNoAdoption(t, s, store.Adoption{UserID: "u1", Key: "c1/m1"}) // once only
	wantAdopted(t, s, store.Adoption{UserID: "u2", Key: "c2/m2"}, other)
	sameRecord(t, "provider's own hold", recordByKey(t, s, "c1/m3"), own)

	// Adoption moves no money.
	wantBalance(t, s, "u1", units(10-2-1-1))
	wantBalance(t, s, "u2", units(9))
	checkLedger(t, s, "u1", 3)
	checkLedger(t, s, "u2", 1)
}

func testAdoptByChat(t *testing.T, s store.Store) {
	newUser(t, s, "u1", units(10))
	newUser(t, s, "u2", units(10))
	theirs := hold(t, s, "u2", "c1/x", store.SourceEdge, "c1", "x", units(1)) // older, another user's
	own := hold(t, s, "u1", "c1/p", store.SourceProvider, "c1", "p", units(1))
	h1 := hold(t, s, "u1", "c1/m1", store.SourceEdge, "c1", "m1", units(1))
	h2 := hold(t, s, "u1", "c1/m2", store.SourceFunction, "c1", "m2", units(2))
	h3 := hold(t, s, "u1", "c2/m3", store.SourceWebsocket, "c2", "m3", units(1))
	api1 := hold(t, s, "u1", "api-1", store.SourceEdge, "", "", units(1))
	api2 := hold(t, s, "u1", "", store.SourceEdge, "", "", units(1)) // no key at all

	wantAdopted(t, s, store.Adoption{UserID: "u1", ChatID: "c1"}, h1) // oldest first, purpose kept
	wantAdopted(t, s, store.Adoption{UserID: "u1", ChatID: "c1", Purpose: "title"}, h2)
	wantNoAdoption(t, s, store.Adoption{UserID: "u1", ChatID: "c1"})
	wantAdopted(t, s, store.Adoption{UserID: "u1", ChatID: "c2"}, h3)
	wantNoAdoption(t, s, store.Adoption{UserID: "u1", ChatID: "c3"})

	// No chat: the oldest hold without one, keyed or not.
	wantAdopted(t, s, store.Adoption{UserID: "u1"}, api1)
	got, ok := adopt(t, s, store.Adoption{UserID: "u1", Purpose: "api"})
	want := api2
	want.Source, want.Purpose = store.SourceProvider, "api"
	if !ok {
		t.Fatal("the hold without a key was not adopted")
	}
	sameRecord(t, "adopted hold without a key", got, want)
	wantNoAdoption(t, s, store.Adoption{UserID: "u1"})

	sameRecord(t, "another user's hold", recordByKey(t, s, "c1/x"), theirs)
	sameRecord(t, "provider's own hold", recordByKey(t, s, "c1/p"), own)
	wantAdopted(t, s, store.Adoption{UserID: "u2", ChatID: "c1"}, theirs)
	wantBalance(t, s, "u1", units(10-1-1-2-1-1-1))
	checkLedger(t, s, "u1", 6)
	checkLedger(t, s, "u2", 1)
}

// testAdoptNewChat: a provider call of a chat with no hold adopts the
// oldest hold of a new chat's first turn and gives it the chat's key.
func testAdoptNewChat(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	newUser(t, s, "u2", units(10))
	hold(t, s, "u2", "new:/x", store.SourceEdge, store.NewChatID, "x", units(1)) // another user's
	noMsg := hold(t, s, "u1", "", store.SourceEdge, store.NewChatID, "", units(1))
	n1 := hold(t, s, "u1", store.NewChatID+"/m1", store.SourceEdge, store.NewChatID, "m1", units(1))
	n2 := hold(t, s, "u1", store.NewChatID+"/m2", store.SourceFunction, store.NewChatID, "m2", units(2))
	c8 := hold(t, s, "u1", "c8/m8", store.SourceEdge, "c8", "m8", units(1))

	// The chat's own hold comes first.
	wantAdopted(t, s, store.Adoption{UserID: "u1", ChatID: "c8"}, c8)

	rekeyed := func(h store.Record, chat string) store.Record {
		h.ChatID, h.Key = chat, chat+"/"+h.MessageID
		return h
	}
	wantAdopted(t, s, store.Adoption{UserID: "u1", ChatID: "c9", Purpose: "chat"}, rekeyed(n1, "c9"))
	if _, err := s.RecordByKey(ctx, store.NewChatID+"/m1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the old key is still there: %v", err)
	}
	// c9 now has a hold, but the provider's: the next new-chat hold is taken.
	wantAdopted(t, s, store.Adoption{UserID: "u1", ChatID: "c9"}, rekeyed(n2, "c9"))
	// Only the hold without a message id is left: it cannot be re-keyed.
	wantNoAdoption(t, s, store.Adoption{UserID: "u1", ChatID: "c9"})
	var noMsgNow store.Record
	recs, _, err := s.ListRecords(ctx, store.RecordQuery{Users: []string{"u1"}, PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.ID == noMsg.ID {
			noMsgNow = r
		}
	}
	sameRecord(t, "hold without a message id", noMsgNow, noMsg)

	// Asked for NewChatID itself, it is just a chat: its oldest hold, with
	// or without a message id, and no re-key.
	n3 := hold(t, s, "u1", store.NewChatID+"/m3", store.SourceEdge, store.NewChatID, "m3", units(1))
	got, ok := adopt(t, s, store.Adoption{UserID: "u1", ChatID: store.NewChatID})
	want := noMsg
	want.Source = store.SourceProvider
	if !ok {
		t.Fatal("the new-chat hold without a message id was not adopted")
	}
	sameRecord(t, "adopted hold without a message id", got, want)
	wantAdopted(t, s, store.Adoption{UserID: "u1", ChatID: store.NewChatID}, n3)

	// The rest are there and the money did not move.
	if r := recordByKey(t, s, "new:/x"); r.Source != store.SourceEdge || r.ChatID != store.NewChatID {
		t.Fatalf("another user's new-chat hold changed: %+v", r)
	}
	wantBalance(t, s, "u1", units(10-1-1-2-1-1))
	checkLedger(t, s, "u1", 5)

	// A re-key that would take a key in use fails and changes nothing.
	n4 := hold(t, s, "u1", store.NewChatID+"/m9", store.SourceEdge, store.NewChatID, "m9", units(1))
	if _, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "c7/m9", Source: store.SourceEdge, Cost: units(1)}); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := s.AdoptHold(ctx, store.Adoption{UserID: "u1", ChatID: "c7"}); err == nil {
		t.Fatalf("a re-key onto a key in use: %+v, %v", rec, ok)
	}
	sameRecord(t, "hold after a failed re-key", recordByKey(t, s, n4.Key), n4)
	checkLedger(t, s, "u1", 7)
}

func testRekeyHold(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(10))
	h := hold(t, s, "u1", "new:/m1", store.SourceEdge, store.NewChatID, "m1", units(2))
	got, ok, err := s.RekeyHold(ctx, "new:/m1", "c1")
	want := h
	want.ChatID, want.Key = "c1", "c1/m1"
	if err != nil || !ok {
		t.Fatalf("RekeyHold: %+v, %v, %v", got, ok, err)
	}
	sameRecord(t, "re-keyed hold", got, want)
	sameRecord(t, "RecordByKey of the new key", recordByKey(t, s, "c1/m1"), want)
	if _, err := s.RecordByKey(ctx, "new:/m1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the old key is still there: %v", err)
	}

	// The expiry of the hold under its old key (listed before the re-key)
	// finds nothing to release and writes nothing.
	before, _ := s.Ledger(ctx, "u1")
	if res, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "new:/m1", Status: store.StatusExpired}); err != nil || res.Record.ID != 0 {
		t.Fatalf("expiring a re-keyed hold: %+v, %v", res, err)
	}
	if _, err := s.RecordByKey(ctx, "new:/m1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the expiry wrote a record: %v", err)
	}
	if after, _ := s.Ledger(ctx, "u1"); after != before {
		t.Fatalf("the expiry changed the ledger: %+v, was %+v", after, before)
	}

	// An adopted hold is re-keyed too, and stays the provider's.
	h2 := hold(t, s, "u1", "new:/m2", store.SourceEdge, store.NewChatID, "m2", units(1))
	wantAdopted(t, s, store.Adoption{UserID: "u1", Key: "new:/m2"}, h2)
	got, ok, err = s.RekeyHold(ctx, "new:/m2", "c2")
	if err != nil || !ok || got.Key != "c2/m2" || got.ChatID != "c2" || got.Source != store.SourceProvider || got.ID != h2.ID {
		t.Fatalf("RekeyHold of an adopted hold: %+v, %v, %v", got, ok, err)
	}

	// Not found, not pending, no message id: nothing.
	if _, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "new:/done", Source: store.SourceEdge, MessageID: "done", Cost: units(1)}); err != nil {
		t.Fatal(err)
	}
	hold(t, s, "u1", "new:/nomsg", store.SourceEdge, store.NewChatID, "", units(1))
	for _, key := range []string{"new:/m1", "nothing", "new:/done", "new:/nomsg", ""} {
		if rec, ok, err := s.RekeyHold(ctx, key, "c3"); err != nil || ok || rec != (store.Record{}) {
			t.Fatalf("RekeyHold(%q) = %+v, %v, %v; want nothing", key, rec, ok, err)
		}
	}
	if r := recordByKey(t, s, "new:/done"); r.ChatID != "" || r.Status != store.StatusCompleted {
		t.Fatalf("a final record was re-keyed: %+v", r)
	}
	if _, _, err := s.RekeyHold(ctx, "new:/nomsg", ""); err == nil {
		t.Fatal("RekeyHold to an empty chat id: no error")
	}
	wantBalance(t, s, "u1", units(10-2-1-1-1))
	checkLedger(t, s, "u1", 4)
}

// usageTotal is the rollups' total of all time.
func usageTotal(t *testing.T, s store.Store) store.UsageTotals {
	t.Helper()
	u, err := s.UsageBetween(t.Context(), time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return u.Total
}

// wantCovered charges key from another path and expects nothing to change.
func wantCovered(t *testing.T, s store.Store, key, source string, rec store.Record, bal money.Amount) {
	t.Helper()
	before := usageTotal(t, s)
	ledger := checkLedger(t, s, rec.UserID, -1)
	res, err := s.Charge(t.Context(), store.Record{UserID: rec.UserID, Key: key, Source: source, Model: "other",
		InputTokens: 7, OutputTokens: 7, Cost: units(5), ChatID: "other", MessageID: "other"})
	if err != nil {
		t.Fatalf("%s charge of %q: %v", source, key, err)
	}
	if !res.Covered || res.Duplicate || res.Held != 0 || res.Balance != bal {
		t.Fatalf("%s charge of %q = %+v, want covered at balance %v", source, key, res, bal)
	}
	sameRecord(t, "covered charge's record", res.Record, rec)
	sameRecord(t, "record after a covered charge", recordByKey(t, s, key), rec)
	wantBalance(t, s, rec.UserID, bal)
	if after := checkLedger(t, s, rec.UserID, -1); after != ledger {
		t.Fatalf("ledger moved on a covered charge: %+v, was %+v", after, ledger)
	}
	if after := usageTotal(t, s); after != before {
		t.Fatalf("rollups moved on a covered charge: %+v, was %+v", after, before)
	}
}

func testChargeCovered(t *testing.T, s store.Store) {
	ctx := t.Context()
	newUser(t, s, "u1", units(20))
	h := hold(t, s, "u1", "c1/m1", store.SourceEdge, "c1", "m1", units(2))
	adopted := wantAdopted(t, s, store.Adoption{UserID: "u1", ChatID: "c1", Purpose: "chat"}, h)
	for _, src := range []string{store.SourceEdge, store.SourceWebsocket, store.SourceFunction} {
		wantCovered(t, s, "c1/m1", src, adopted, units(18))
	}
	checkLedger(t, s, "u1", 1)

	// The provider meter's charge completes its hold, netting what it held.
	res, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "c1/m1", Source: store.SourceProvider, Model: "gpt",
		InputTokens: 30, OutputTokens: 20, Cost: units(3)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Covered || res.Duplicate || res.Held != units(2) || res.Balance != units(17) ||
		res.Record.ID != h.ID || res.Record.Status != store.StatusCompleted || res.Record.Source != store.SourceProvider ||
		res.Record.Cost != units(3) || res.Record.Purpose != "chat" || res.Record.ExpiresAt != nil {
		t.Fatalf("provider charge of its hold: %+v", res)
	}
	final := res.Record
	if u := usageTotal(t, s); u.Calls != 1 || u.Cost != units(3) {
		t.Fatalf("usage after the provider charge: %+v", u)
	}
	checkLedger(t, s, "u1", 1)
	// Later charges of other paths are covered; the provider's own is a duplicate.
	for _, src := range []string{store.SourceEdge, store.SourceWebsocket, store.SourceFunction} {
		wantCovered(t, s, "c1/m1", src, final, units(17))
	}
	dup, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "c1/m1", Source: store.SourceProvider, Cost: units(9)})
	if err != nil || !dup.Duplicate || dup.Covered || dup.Balance != units(17) {
		t.Fatalf("provider charge again: %+v, %v", dup, err)
	}

	// A provider charge without a hold covers the other paths too.
	p, err := s.Charge(ctx, store.Record{UserID: "u1", Key: "c1/m2", Source: store.SourceProvider, Cost: units(1), Model: "gpt"})
	if err != nil || p.Covered || p.Duplicate {
		t.Fatalf("provider charge: %+v, %v", p, err)
	}
	wantCovered(t, s, "c1/m2", store.SourceEdge, p.Record, units(16))

	// A provider charge of a hold it did not adopt completes it as before.
	h3 := hold(t, s, "u1", "c1/m3", store.SourceEdge, "c1", "m3", units(2))
	res, err = s.Charge(ctx, store.Record{UserID: "u1", Key: "c1/m3", Source: store.SourceProvider, Cost: units(1)})
	if err != nil || res.Covered || res.Held != units(2) || res.Balance != units(15) || res.Record.ID != h3.ID ||
		res.Record.Source != store.SourceProvider || res.Record.Status != store.StatusCompleted {
		t.Fatalf("provider charge of an edge hold: %+v, %v", res, err)
	}
	checkLedger(t, s, "u1", 3)

	// An adopted hold that lapses is settled as expired (a charge without
	// a source is not covered), and then an edge report charges in full.
	h4 := hold(t, s, "u1", "c1/m4", store.SourceEdge, "c1", "m4", units(2))
	wantAdopted(t, s, store.Adoption{UserID: "u1", Key: "c1/m4"}, h4)
	res, err = s.Charge(ctx, store.Record{UserID: "u1", Key: "c1/m4", Status: store.StatusExpired})
	if err != nil || res.Covered || res.Held != units(2) || res.Balance != units(15) ||
		res.Record.Status != store.StatusExpired || res.Record.Source != store.SourceProvider {
		t.Fatalf("expiry of an adopted hold: %+v, %v", res, err)
	}
	checkLedger(t, s, "u1", 4)
	res, err = s.Charge(ctx, store.Record{UserID: "u1", Key: "c1/m4", Source: store.SourceEdge, Cost: units(4), Model: "gpt"})
	if err != nil || res.Covered || res.Duplicate || res.Held != 0 || res.Balance != units(11) ||
		res.Record.Status != store.StatusCompleted || res.Record.Source != store.SourceEdge || res.Record.Cost != units(4) {
		t.Fatalf("edge charge of an expired provider record: %+v, %v", res, err)
	}
	l := checkLedger(t, s, "u1", 4)
	if l.Charges != units(3+1+1+4) {
		t.Fatalf("ledger charges %v", l.Charges)
	}
	if u := usageTotal(t, s); u.Calls != 4 || u.Cost != units(9) {
		t.Fatalf("usage at the end: %+v", u)
	}
}

// testAdoptRace runs RaceAdoption on one store.
func testAdoptRace(t *testing.T, s store.Store) { RaceAdoption(t, s, s) }

// RaceAdoption races AdoptHold calls, and an edge charge against a
// provider-meter adoption and charge, alternately on stores a and b, which
// share one database (or are one store). Exactly one adopts each hold, and
// exactly one charge of each message lands. The user "race" must not exist.
func RaceAdoption(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	const (
		user     = "race"
		adopters = 20
		rounds   = 6
	)
	stores := [2]store.Store{a, b}
	newUser(t, a, user, units(1000))
	bal := units(1000)

	// Many adopters, one hold: by chat in even rounds, by key in odd ones.
	for round := range rounds {
		chat := fmt.Sprintf("adopt-%d", round)
		h := hold(t, a, user, chat+"/m", store.SourceEdge, chat, "m", units(1))
		bal -= units(1)
		var (
			wg   sync.WaitGroup
			recs [adopters]store.Record
			oks  [adopters]bool
			errs [adopters]error
		)
		start := make(chan struct{})
		for i := range adopters {
			wg.Go(func() {
				ad := store.Adoption{UserID: user, ChatID: chat}
				if round%2 == 1 {
					ad = store.Adoption{UserID: user, Key: h.Key}
				}
				<-start
				recs[i], oks[i], errs[i] = stores[i%2].AdoptHold(ctx, ad)
			})
		}
		close(start)
		wg.Wait()
		adopted := 0
		for i := range adopters {
			if errs[i] != nil {
				t.Fatalf("round %d, adopter %d: %v", round, i, errs[i])
			}
			if oks[i] {
				adopted++
				if recs[i].ID != h.ID || recs[i].Source != store.SourceProvider {
					t.Fatalf("round %d, adopter %d adopted %+v", round, i, recs[i])
				}
			}
		}
		if adopted != 1 {
			t.Fatalf("round %d: %d adopters adopted the hold, want 1", round, adopted)
		}
		wantBalance(t, a, user, bal)
		checkLedger(t, b, user, int64(round)+1)
	}

	// The front settles a message while the provider meter adopts and
	// charges it: one of the two charges lands.
	edgeCost, providerCost := units(3), units(5)
	for round := range 3 * rounds {
		chat := fmt.Sprintf("settle-%d", round)
		key := chat + "/m"
		hold(t, a, user, key, store.SourceEdge, chat, "m", units(10))
		var (
			wg         sync.WaitGroup
			edge, prov store.ChargeResult
			eErr, pErr error
			adopted    bool
		)
		front, meter := stores[round%2], stores[(round+1)%2]
		start := make(chan struct{})
		wg.Go(func() {
			<-start
			edge, eErr = front.Charge(ctx, store.Record{UserID: user, Key: key, Source: store.SourceEdge, Cost: edgeCost})
		})
		wg.Go(func() {
			ad := store.Adoption{UserID: user, ChatID: chat}
			if round%3 == 1 {
				ad = store.Adoption{UserID: user, Key: key}
			}
			<-start
			rec, ok, err := meter.AdoptHold(ctx, ad)
			if err != nil {
				pErr = err
				return
			}
			// Not adopted: the front settled it first, and the provider's
			// charge of the message is a duplicate.
			adopted = ok
			if ok && rec.Key != key {
				pErr = fmt.Errorf("adopted %+v", rec)
				return
			}
			prov, pErr = meter.Charge(ctx, store.Record{UserID: user, Key: key, Source: store.SourceProvider, Cost: providerCost})
		})
		close(start)
		wg.Wait()
		if eErr != nil || pErr != nil {
			t.Fatalf("round %d: edge %v, provider %v", round, eErr, pErr)
		}
		edgeLanded := !edge.Covered && !edge.Duplicate
		provLanded := !prov.Covered && !prov.Duplicate
		if edgeLanded == provLanded {
			t.Fatalf("round %d: edge %+v and provider %+v (adopted %v): want exactly one charge", round, edge, prov, adopted)
		}
		want, src := edgeCost, store.SourceEdge
		if provLanded {
			want, src = providerCost, store.SourceProvider
			if !adopted || !edge.Covered {
				t.Fatalf("round %d: provider charged without adopting (%v) or edge not covered: %+v", round, adopted, edge)
			}
		} else if adopted || !prov.Duplicate {
			t.Fatalf("round %d: edge charged, provider adopted %v: %+v", round, adopted, prov)
		}
		bal -= want
		r := recordByKey(t, b, key)
		if r.Status != store.StatusCompleted || r.Cost != want || r.Source != src {
			t.Fatalf("round %d: record %+v, want %s at %v", round, r, src, want)
		}
		wantBalance(t, a, user, bal)
		wantBalance(t, b, user, bal)
		checkLedger(t, a, user, int64(rounds+round)+1)
	}
}
