// Package disk is the embedded durable store, `flowbot serve`'s default:
// the memory store's semantics (one implementation of the store's rules,
// reads served from memory), with every change written to a bbolt file in
// the data directory before the call that made it returns. State survives
// a restart and kill -9. One process holds the directory at a time: a
// lock file refuses a second one, and makes the holder the instance (a
// restart after kill -9 serves at once; MongoDB is the store for several
// instances).
package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/flowbot/flowbot/store/memory"
)

// Store is the durable store of one data directory.
type Store struct {
	*memory.Store
	dir  string
	db   *bolt.DB
	lock *os.File

	mu      sync.Mutex
	cond    *sync.Cond
	pending []*batch
	failed  error
	closed  bool
	done    chan struct{}
}

// batch is one call's changes, and where its outcome goes.
type batch struct {
	changes []memory.Change
	done    chan error
}

// ErrLocked is returned by Open when another process holds the
// directory.
var ErrLocked = errors.New("the data directory is in use by another flowbot process")

// Open opens (creating it if need be) the data directory dir, takes its
// lock, and loads what it holds.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the data directory %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the data directory's lock %s: %w", filepath.Join(dir, "LOCK"), err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lock.Name())
		lock.Close()
		who := strings.TrimSpace(string(holder))
		if who != "" {
			who = " (pid " + who + ")"
		}
		return nil, fmt.Errorf("%w%s: %s. One process keeps state in a directory; to run several instances, use MongoDB (--mongo-uri)", ErrLocked, who, dir)
	}
	lock.Truncate(0)
	lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	db, err := bolt.Open(filepath.Join(dir, "flowbot.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("opening %s: %w", filepath.Join(dir, "flowbot.db"), err)
	}
	s := &Store{Store: memory.New(), dir: dir, db: db, lock: lock, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	if err := s.load(); err != nil {
		db.Close()
		lock.Close()
		return nil, err
	}
	s.Store.SetPersister(s)
	go s.commit()
	return s, nil
}

// load puts everything the file holds back in memory.
func (s *Store) load() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range memory.Buckets {
			b, err := tx.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			if name == memory.BucketAudience {
				continue // read from the file when a batch needs it (Get)
			}
			if err := b.ForEach(func(k, v []byte) error { return s.Store.Restore(name, string(k), v) }); err != nil {
				return fmt.Errorf("loading %s: %w", filepath.Join(s.dir, "flowbot.db"), err)
			}
		}
		return nil
	})
}

// Get implements memory.Reader: an entry as written (a call that wrote
// it has returned only once it was).
func (s *Store) Get(bucket, key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return fmt.Errorf("no bucket %q", bucket)
		}
		if v := b.Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// Commit implements memory.Persister: the changes join the next write;
// concurrent calls share it (one sync to disk for all).
func (s *Store) Commit(changes []memory.Change) func() error {
	b := &batch{changes: changes, done: make(chan error, 1)}
	s.mu.Lock()
	switch {
	case s.failed != nil:
		b.done <- s.failed
	case s.closed:
		b.done <- errors.New("the store is closed")
	default:
		s.pending = append(s.pending, b)
		s.cond.Signal()
	}
	s.mu.Unlock()
	return func() error { return <-b.done }
}

// commit writes the pending changes, in order, a transaction at a time.
// A write that fails fails every later one: memory then holds changes the
// disk does not, and the process must be restarted (it reloads what was
// written).
func (s *Store) commit() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.pending) == 0 && !s.closed {
			s.cond.Wait()
		}
		todo := s.pending
		s.pending = nil
		closed := s.closed
		s.mu.Unlock()
		if len(todo) > 0 {
			err := s.db.Update(func(tx *bolt.Tx) error {
				for _, b := range todo {
					for _, c := range b.changes {
						bk := tx.Bucket([]byte(c.Bucket))
						if bk == nil {
							return fmt.Errorf("no bucket %q", c.Bucket)
						}
						var err error
						if c.Value == nil {
							err = bk.Delete([]byte(c.Key))
						} else {
							err = bk.Put([]byte(c.Key), c.Value)
						}
						if err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				err = fmt.Errorf("writing to the data directory %s: %w (restart flowbot once it can write again: it reloads what was written)", s.dir, err)
				s.mu.Lock()
				s.failed = err
				s.mu.Unlock()
			}
			for _, b := range todo {
				b.done <- err
			}
		}
		if closed && len(todo) == 0 {
			return
		}
	}
}

// Close writes what is pending, closes the file and gives the directory
// up.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cond.Signal()
	s.mu.Unlock()
	<-s.done
	err := s.db.Close()
	syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
	s.lock.Close()
	return err
}

// Ping implements store.Store: a store that could not write is down.
func (s *Store) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Name implements store.Store.
func (s *Store) Name() string { return "disk (" + s.dir + ")" }

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }
