//go:build tools

// Package tools records the etcd server command this module builds, so `go mod tidy` keeps its
// dependencies in go.sum.
package tools

import _ "go.etcd.io/etcd/server/v3"
