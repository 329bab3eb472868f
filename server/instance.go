package server

import "github.com/flowbot/flowbot/runtime"

// DefaultInstanceID is the host name and the listen address
// (runtime.DefaultInstanceID).
func DefaultInstanceID(addr string) string { return runtime.DefaultInstanceID(addr) }
