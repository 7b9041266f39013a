package filer

// SetBeforeApply makes s run fn on its state machine's goroutine before
// each command is applied (tests only).
func SetBeforeApply(s *Server, fn func(index uint64)) { s.fsm.beforeApply.Store(&fn) }
