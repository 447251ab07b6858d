package storage

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/7awel/wallet/regions"
	"github.com/7awel/wallet/storage/dbtest"
)

// The package's database: created, migrated and seeded once in TestMain; tests make their own
// users with fresh ids, so they run in parallel.
var (
	testURL     string
	testRegions *regions.Table
	sharedDB    *DB
	sharedKeys  *Keys
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	ctx := context.Background()
	var err error
	if testRegions, err = regions.Parse(regions.DefaultRegions, regions.DefaultPrimary, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	url, drop, err := dbtest.NewDatabase(ctx, "storage")
	if err != nil {
		fmt.Fprintln(os.Stderr, "storage tests:", err)
		return 1
	}
	defer drop()
	testURL = url
	if err := MigrateUp(ctx, url, testRegions); err != nil {
		fmt.Fprintln(os.Stderr, "storage tests: migrate:", err)
		return 1
	}
	sharedKeys = testKeys(nil)
	if sharedDB, err = Open(ctx, url, testRegions, Options{Keys: sharedKeys}); err != nil {
		fmt.Fprintln(os.Stderr, "storage tests: open:", err)
		return 1
	}
	defer sharedDB.Close()
	if err := sharedDB.Seed(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "storage tests: seed:", err)
		return 1
	}
	return m.Run()
}

// testDB returns the package's migrated and seeded database.
func testDB(t testing.TB) *DB { return sharedDB }

// freshDatabase returns an empty database that lives as long as the test.
func freshDatabase(t *testing.T) string { return dbtest.ForTest(t) }
