//go:build !linux

package tlsmode

import "syscall"

// Parking is Linux-only (epoll); elsewhere the server side of an upgraded
// stream waits on its goroutine.

type upPark struct{}

type upParker struct{}

func upTheParker() *upParker { return nil }

func (*upParker) waiter(syscall.Conn, func()) *upPark { return nil }
func (*upPark) done()                                 {}
func (*upPark) park(func() bool) bool                 { return false }
func (*upPark) kick()                                 {}
