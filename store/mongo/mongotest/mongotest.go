// Package mongotest gives tests a MongoDB: $MONGODB_URI when it is set (a
// real MongoDB), else FerretDB, a MongoDB wire-compatible server written
// in Go, embedded in the test process on a temporary SQLite directory.
// Only tests import it; the product talks to MongoDB through the official
// driver alone.
package mongotest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// URI returns a server's connection string, started for the test (and
// stopped at its end) unless $MONGODB_URI names one.
func URI(t testing.TB) string {
	t.Helper()
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		return uri
	}
	dir := t.TempDir()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		Logger:    logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f.MongoDBURI()
}

var seq atomic.Int64

// DatabaseURI returns URI(t) with a database name of its own, so that
// tests sharing a server do not see each other's data.
func DatabaseURI(t testing.TB) string {
	t.Helper()
	return WithDatabase(URI(t), fmt.Sprintf("flowbot_test_%d_%d", time.Now().UnixNano(), seq.Add(1)))
}

// WithDatabase puts a database name into a connection string.
func WithDatabase(uri, db string) string {
	// mongodb://host:port/?opts or mongodb://host:port
	scheme, rest, _ := strings.Cut(uri, "://")
	host, path, _ := strings.Cut(rest, "/")
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		query = path[i:]
	}
	return scheme + "://" + host + "/" + db + query
}

// logger is silent unless $FLOWBOT_FERRETDB_LOG is set.
func logger() *slog.Logger {
	if os.Getenv("FLOWBOT_FERRETDB_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
