// Package e2e holds end-to-end tests that run real cairn processes on
// loopback addresses and kill them with SIGKILL.
package e2e
