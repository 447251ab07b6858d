package regions

import (
	"errors"
	"slices"
	"testing"
)

func defaultTable(t *testing.T) *Table {
	t.Helper()
	tb, err := Parse(DefaultRegions, DefaultPrimary, "")
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// TestHomeForEveryConfiguredCountry walks the whole default map: each country lands in the
// region the map names, whatever region serves the request.
func TestHomeForEveryConfiguredCountry(t *testing.T) {
	tb := defaultTable(t)
	total := 0
	for region, countries := range defaultCountries {
		for _, cc := range countries {
			total++
			for _, serving := range tb.Names() {
				if got := tb.HomeFor(cc, serving); got != region {
					t.Errorf("HomeFor(%s, served by %s) = %s, want %s", cc, serving, got, region)
				}
			}
		}
	}
	if total != len(tb.Countries()) {
		t.Fatalf("map has %d entries, table %d: a country is listed twice", total, len(tb.Countries()))
	}
}

func TestHomeForSpotChecks(t *testing.T) {
	tb := defaultTable(t)
	tests := []struct{ country, serving, want string }{
		{"AE", "us-east1", "me-central1"}, // a traveller from Dubai signing up in New York
		{"SA", "eu-west1", "me-central1"},
		{"EG", "me-central1", "me-central1"},
		{"FR", "me-central1", "eu-west1"},
		{"GB", "us-east1", "eu-west1"},
		{"US", "eu-west1", "us-east1"},
		{"BR", "me-central1", "us-east1"},
		{"ae", "us-east1", "me-central1"},   // case-insensitive
		{" AE ", "us-east1", "me-central1"}, // trimmed
		{"JP", "eu-west1", "eu-west1"},      // unknown: the serving region
		{"", "us-east1", "us-east1"},
		{"XX", "me-central1", "me-central1"},
		{"AEX", "us-east1", "us-east1"},
	}
	for _, tt := range tests {
		if got := tb.HomeFor(tt.country, tt.serving); got != tt.want {
			t.Errorf("HomeFor(%q, %s) = %s, want %s", tt.country, tt.serving, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, list, primary, countries string
		wantErr                        bool
	}{
		{"defaults", DefaultRegions, DefaultPrimary, "", false},
		{"spaces", " me-central1 , eu-west1 ", "eu-west1", "", false},
		{"override", "me-central1,eu-west1", "me-central1", "AE=eu-west1, fr=eu-west1", false},
		{"empty", "", "me-central1", "", true},
		{"duplicate", "eu-west1,eu-west1", "eu-west1", "", true},
		{"bad name", "EU_West", "EU_West", "", true},
		{"too short", "a", "a", "", true},
		{"primary missing", "eu-west1", "me-central1", "", true},
		{"country to unknown region", "eu-west1", "eu-west1", "AE=me-central1", true},
		{"bad country", "eu-west1", "eu-west1", "UAE=eu-west1", true},
		{"country twice", "eu-west1", "eu-west1", "AE=eu-west1,ae=eu-west1", true},
		{"no equals", "eu-west1", "eu-west1", "AE", true},
	}
	for _, tt := range tests {
		_, err := Parse(tt.list, tt.primary, tt.countries)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, wantErr %v", tt.name, err, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v is not ErrInvalid", tt.name, err)
		}
	}
}

func TestOverrideReplacesTheDefaultMap(t *testing.T) {
	tb, err := Parse("me-central1,eu-west1", "me-central1", "AE=eu-west1")
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.HomeFor("AE", "me-central1"); got != "eu-west1" {
		t.Fatalf("override ignored: %s", got)
	}
	if got := tb.HomeFor("FR", "me-central1"); got != "me-central1" {
		t.Fatalf("a country absent from the override must fall back to the serving region, got %s", got)
	}
}

// TestDefaultMapWithoutARegion: a deployment without us-east1 serves the Americas from the
// caller's region rather than homing users in a region that does not exist.
func TestDefaultMapWithoutARegion(t *testing.T) {
	tb, err := Parse("me-central1,eu-west1", "me-central1", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.HomeFor("US", "eu-west1"); got != "eu-west1" {
		t.Fatalf("HomeFor(US) = %s", got)
	}
	for _, cc := range tb.Countries() {
		if !tb.Has(tb.HomeFor(cc, "eu-west1")) {
			t.Fatalf("%s maps outside the deployment", cc)
		}
	}
}

func TestTableAccessors(t *testing.T) {
	tb := defaultTable(t)
	if !slices.Equal(tb.Names(), []string{"me-central1", "eu-west1", "us-east1"}) || tb.Primary() != "me-central1" {
		t.Fatalf("names %v primary %s", tb.Names(), tb.Primary())
	}
	names := tb.Names()
	names[0] = "changed"
	if tb.Names()[0] != "me-central1" {
		t.Fatal("Names exposes the table's slice")
	}
	if tb.Check("eu-west1") != nil || !errors.Is(tb.Check("mars-north1"), ErrUnknownRegion) {
		t.Fatal("Check")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(DefaultRegions, DefaultPrimary, "AE=me-central1")
	f.Add("a,b", "a", "=,=")
	f.Fuzz(func(t *testing.T, list, primary, countries string) {
		tb, err := Parse(list, primary, countries)
		if err != nil {
			return
		}
		if !tb.Has(tb.Primary()) {
			t.Fatalf("primary %q not in %v", tb.Primary(), tb.Names())
		}
		for _, cc := range tb.Countries() {
			if !tb.Has(tb.HomeFor(cc, tb.Primary())) {
				t.Fatalf("%s maps outside the deployment", cc)
			}
		}
	})
}
