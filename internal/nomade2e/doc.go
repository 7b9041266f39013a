// Package nomade2e tests the shipped Nomad jobspecs (nomad-jobs/): every
// jobspec and volume spec is validated with the nomad CLI, and the raw_exec
// and exec flavour is run end to end on a real Nomad agent (server and
// client in one process, on 127.0.0.1) with real FUSE mounts, driven only
// through the nomad CLI and the shipped files with -var flags.
//
// The Nomad binary (1.6.1) comes from scripts/nomad.sh, which builds it once
// per machine into ${XDG_CACHE_HOME:-$HOME/.cache}/cairn/nomad-1.6.1/nomad;
// $NOMAD_BIN overrides it. The cairn binary is $CAIRN_BIN (make test sets
// it) or one built for the test run.
package nomade2e
