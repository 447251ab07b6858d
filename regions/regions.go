// Package regions owns the deployment's region table: the regions a deployment runs in, its
// primary region, and the rule that maps a phone number's country to a user's home region.
//
// It is pure: no I/O, no clocks, no globals. Nothing else in the code repeats the region list or
// the country map; storage, server and the migrations ask a Table. It deliberately knows nothing
// about CockroachDB or SQL: the region names here are the labels of the database's region enum.
package regions

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Default regions of a deployment when configuration names none.
const (
	DefaultRegions = "me-central1,eu-west1,us-east1"
	DefaultPrimary = "me-central1"
)

// ErrInvalid reports a region table that cannot be used; the message names the offending part.
var ErrInvalid = errors.New("invalid region configuration")

// ErrUnknownRegion is returned for a region name that is not one of the deployment's regions.
var ErrUnknownRegion = errors.New("unknown region")

// namePattern is what a region label may look like: cloud-style names such as "me-central1" or
// "eu-west-1". They become enum labels and Kubernetes label values, so keep them plain.
var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{1,62}[a-z0-9]$`)

// countryPattern is an ISO 3166-1 alpha-2 code, upper case.
var countryPattern = regexp.MustCompile(`^[A-Z]{2}$`)

// Table is a validated region table. The zero value is not usable; build one with New.
type Table struct {
	names     []string          // in configured order, primary included
	primary   string            // one of names
	countries map[string]string // ISO alpha-2 → region, only regions in names
}

// defaultCountries maps countries to the region that serves them best when the deployment runs
// the default three regions. Gulf, Levant and North Africa go to me-central1, Europe to eu-west1,
// the Americas to us-east1. Countries not listed fall back to the serving region (see HomeFor).
var defaultCountries = map[string][]string{
	"me-central1": {
		"AE", "SA", "QA", "KW", "BH", "OM", "YE", "IQ", "JO", "LB", "SY", "PS", "EG", "LY", "TN",
		"DZ", "MA", "SD", "MR", "DJ", "SO", "KM",
	},
	"eu-west1": {
		"GB", "IE", "FR", "DE", "NL", "BE", "LU", "ES", "PT", "IT", "MT", "AT", "CH", "LI", "DK",
		"SE", "NO", "FI", "IS", "PL", "CZ", "SK", "HU", "SI", "HR", "RO", "BG", "GR", "CY", "EE",
		"LV", "LT", "TR", "MC", "AD", "SM",
	},
	"us-east1": {
		"US", "CA", "MX", "BR", "AR", "CL", "CO", "PE", "VE", "EC", "BO", "PY", "UY", "GT", "CR",
		"PA", "DO", "PR", "JM", "TT", "HN", "SV", "NI", "CU", "HT", "BS", "BB",
	},
}

// New validates a region table. names is the deployment's region list, primary one of them, and
// countries an optional override "CC=region" map (nil takes the default map, restricted to the
// configured regions). Every problem is reported with the value that caused it.
func New(names []string, primary string, countries map[string]string) (*Table, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no regions", ErrInvalid)
	}
	seen := make(map[string]bool, len(names))
	clean := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.TrimSpace(n)
		if !namePattern.MatchString(n) {
			return nil, fmt.Errorf("%w: region name %q (want lower-case letters, digits and dashes)", ErrInvalid, n)
		}
		if seen[n] {
			return nil, fmt.Errorf("%w: region %q listed twice", ErrInvalid, n)
		}
		seen[n] = true
		clean = append(clean, n)
	}
	primary = strings.TrimSpace(primary)
	if !seen[primary] {
		return nil, fmt.Errorf("%w: primary region %q is not one of %v", ErrInvalid, primary, clean)
	}
	t := &Table{names: clean, primary: primary, countries: make(map[string]string)}
	if countries == nil {
		for region, ccs := range defaultCountries {
			if !seen[region] {
				continue // a deployment without this region serves these countries from their caller's region
			}
			for _, cc := range ccs {
				t.countries[cc] = region
			}
		}
		return t, nil
	}
	for cc, region := range countries {
		if !countryPattern.MatchString(cc) {
			return nil, fmt.Errorf("%w: country code %q (want ISO 3166-1 alpha-2, upper case)", ErrInvalid, cc)
		}
		if !seen[region] {
			return nil, fmt.Errorf("%w: country %s maps to %q, which is not one of %v", ErrInvalid, cc, region, clean)
		}
		t.countries[cc] = region
	}
	return t, nil
}

// Parse builds a Table from configuration strings: a comma-separated region list, the primary
// region, and an optional country map "AE=me-central1,FR=eu-west1" (empty: the default map).
func Parse(list, primary, countryMap string) (*Table, error) {
	var names []string
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	var countries map[string]string
	if strings.TrimSpace(countryMap) != "" {
		countries = make(map[string]string)
		for _, pair := range strings.Split(countryMap, ",") {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			cc, region, ok := strings.Cut(pair, "=")
			if !ok {
				return nil, fmt.Errorf("%w: country map entry %q (want CC=region)", ErrInvalid, pair)
			}
			cc = strings.ToUpper(strings.TrimSpace(cc))
			if _, dup := countries[cc]; dup {
				return nil, fmt.Errorf("%w: country %s mapped twice", ErrInvalid, cc)
			}
			countries[cc] = strings.TrimSpace(region)
		}
	}
	return New(names, primary, countries)
}

// Names returns the deployment's regions in configured order.
func (t *Table) Names() []string { return slices.Clone(t.names) }

// Primary returns the deployment's primary region.
func (t *Table) Primary() string { return t.primary }

// Has reports whether name is one of the deployment's regions.
func (t *Table) Has(name string) bool { return slices.Contains(t.names, name) }

// Check returns ErrUnknownRegion (wrapped, naming the value) unless name is a deployment region.
func (t *Table) Check(name string) error {
	if !t.Has(name) {
		return fmt.Errorf("%w: %q", ErrUnknownRegion, name)
	}
	return nil
}

// HomeFor returns the home region of a user whose phone number belongs to country (ISO alpha-2).
// A user's home is fixed by where they live, not by the region that served the sign-up (a
// traveller must not be homed abroad); a country the table does not know falls back to serving,
// the region of the pod handling the request. serving must be a deployment region.
func (t *Table) HomeFor(country, serving string) string {
	if r, ok := t.countries[strings.ToUpper(strings.TrimSpace(country))]; ok {
		return r
	}
	return serving
}

// Countries returns the configured country codes in sorted order, for tests and documentation.
func (t *Table) Countries() []string {
	out := make([]string, 0, len(t.countries))
	for cc := range t.countries {
		out = append(out, cc)
	}
	sort.Strings(out)
	return out
}
