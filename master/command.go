package master

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// ErrBadCommand is wrapped by every error decoding or validating a Raft
// command. Such a command is rejected without touching the state.
var ErrBadCommand = errors.New("master: bad raft command")

// commandVersion is the only encoding version this master understands.
const commandVersion = 1

// Command types.
const (
	cmdRegisterServer  = "register_server"
	cmdReserveVolumeID = "reserve_volume_id"
	cmdAddVolume       = "add_volume"
	cmdSetPrimary      = "set_primary"
	cmdLeaseKeys       = "lease_keys"
	cmdSetReplicas     = "set_replicas"
	cmdSetDraining     = "set_draining"
)

// maxLease bounds one LeaseKeys command.
const maxLease = 1 << 24

// command is one Raft log entry of the master's state machine, encoded as
// JSON with a version and a type; exactly the field of that type is set.
type command struct {
	V      int           `json:"v"`
	Type   string        `json:"type"`
	Server *ServerRecord `json:"server,omitempty"`
	Volume *VolumeRecord `json:"volume,omitempty"`
	// VolumeID and Primary are used by set_primary.
	VolumeID uint32 `json:"volume_id,omitempty"`
	Primary  string `json:"primary,omitempty"`
	// N is the number of keys a lease_keys command reserves.
	N uint64 `json:"n,omitempty"`
	// Replicas and Expect are used by set_replicas (with VolumeID and
	// Primary): the new replica set, applied only while the current one is
	// Expect (in any order), so that two changes planned from the same
	// state cannot both apply.
	Replicas []string `json:"replicas,omitempty"`
	Expect   []string `json:"expect,omitempty"`
	// URL and Draining are used by set_draining.
	URL      string `json:"url,omitempty"`
	Draining bool   `json:"draining,omitempty"`
}

// ServerRecord is a volume server as the replicated state knows it.
type ServerRecord struct {
	URL        string `json:"url"` // HTTP address, the identity
	PublicURL  string `json:"public_url"`
	GRPCPort   uint32 `json:"grpc_port"`
	DC         string `json:"dc"`
	Rack       string `json:"rack"`
	MaxVolumes uint32 `json:"max_volumes"`
	// Draining servers get no new volumes or replicas (volume.evacuate).
	Draining bool `json:"draining,omitempty"`
}

// VolumeRecord is a volume and its replica set.
type VolumeRecord struct {
	ID          uint32   `json:"id"`
	Collection  string   `json:"collection"`
	Replication string   `json:"replication"`
	Replicas    []string `json:"replicas"` // HTTP addresses; primary included
	Primary     string   `json:"primary"`
}

// KeyRange is the half-open range [Start, End) of file keys a lease returned.
type KeyRange struct {
	Start, End uint64
}

func encodeCommand(c command) []byte {
	c.V = commandVersion
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("master: encode command: %v", err)) // only plain types
	}
	return b
}

func registerServerCmd(s ServerRecord) []byte {
	return encodeCommand(command{Type: cmdRegisterServer, Server: &s})
}
func reserveVolumeIDCmd() []byte { return encodeCommand(command{Type: cmdReserveVolumeID}) }
func addVolumeCmd(v VolumeRecord) []byte {
	return encodeCommand(command{Type: cmdAddVolume, Volume: &v})
}
func setPrimaryCmd(id uint32, primary string) []byte {
	return encodeCommand(command{Type: cmdSetPrimary, VolumeID: id, Primary: primary})
}
func leaseKeysCmd(n uint64) []byte { return encodeCommand(command{Type: cmdLeaseKeys, N: n}) }
func setDrainingCmd(url string, draining bool) []byte {
	return encodeCommand(command{Type: cmdSetDraining, URL: url, Draining: draining})
}
func setReplicasCmd(id uint32, replicas []string, primary string, expect []string) []byte {
	return encodeCommand(command{Type: cmdSetReplicas, VolumeID: id, Replicas: replicas, Primary: primary, Expect: expect})
}

// DecodeCommand parses and validates one encoded command. It never panics;
// anything it does not fully understand is an error wrapping ErrBadCommand.
func decodeCommand(b []byte) (command, error) {
	var c command
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return command{}, fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	if dec.More() {
		return command{}, fmt.Errorf("%w: trailing data", ErrBadCommand)
	}
	if c.V != commandVersion {
		return command{}, fmt.Errorf("%w: version %d, this master understands %d; upgrade it", ErrBadCommand, c.V, commandVersion)
	}
	if err := c.validate(); err != nil {
		return command{}, fmt.Errorf("%w: %s: %w", ErrBadCommand, c.Type, err)
	}
	return c, nil
}

func (c *command) validate() error {
	if c.Type != cmdSetReplicas && (c.Replicas != nil || c.Expect != nil) {
		return errors.New("replicas and expect belong to set_replicas only")
	}
	if c.Type != cmdSetDraining && (c.URL != "" || c.Draining) {
		return errors.New("url and draining belong to set_draining only")
	}
	onlyServer := c.Server != nil && c.Volume == nil && c.VolumeID == 0 && c.Primary == "" && c.N == 0
	onlyVolume := c.Server == nil && c.Volume != nil && c.VolumeID == 0 && c.Primary == "" && c.N == 0
	none := c.Server == nil && c.Volume == nil && c.VolumeID == 0 && c.Primary == "" && c.N == 0
	switch c.Type {
	case cmdRegisterServer:
		if !onlyServer {
			return errors.New("needs exactly a server")
		}
		return validAddr("server url", c.Server.URL)
	case cmdReserveVolumeID:
		if !none {
			return errors.New("takes no arguments")
		}
	case cmdAddVolume:
		if !onlyVolume {
			return errors.New("needs exactly a volume")
		}
		return c.Volume.validate()
	case cmdSetPrimary:
		if c.Server != nil || c.Volume != nil || c.N != 0 || c.VolumeID == 0 {
			return errors.New("needs exactly a volume id and a primary")
		}
		return validAddr("primary", c.Primary)
	case cmdLeaseKeys:
		if c.Server != nil || c.Volume != nil || c.VolumeID != 0 || c.Primary != "" {
			return errors.New("needs exactly n")
		}
		if c.N == 0 || c.N > maxLease {
			return fmt.Errorf("n=%d outside 1..%d", c.N, maxLease)
		}
	case cmdSetReplicas:
		if c.Server != nil || c.Volume != nil || c.N != 0 || c.VolumeID == 0 || len(c.Expect) == 0 {
			return errors.New("needs exactly a volume id, replicas, a primary and the expected replicas")
		}
		if err := validReplicaList("replica", c.Replicas); err != nil {
			return err
		}
		if err := validReplicaList("expected replica", c.Expect); err != nil {
			return err
		}
		if !slices.Contains(c.Replicas, c.Primary) {
			return fmt.Errorf("primary %q is not a replica", c.Primary)
		}
	case cmdSetDraining:
		if c.Server != nil || c.Volume != nil || c.N != 0 || c.VolumeID != 0 || c.Primary != "" || c.Replicas != nil || c.Expect != nil {
			return errors.New("needs exactly a url and draining")
		}
		return validAddr("server url", c.URL)
	default:
		return fmt.Errorf("unknown command type %q", c.Type)
	}
	return nil
}

func (v *VolumeRecord) validate() error {
	if v.ID == 0 {
		return errors.New("volume id 0")
	}
	if _, err := parsePlacement(v.Replication); err != nil {
		return err
	}
	if strings.ContainsAny(v.Collection, ",/ \t\n") {
		return fmt.Errorf("collection %q has a separator in it", v.Collection)
	}
	if err := validReplicaList("replica", v.Replicas); err != nil {
		return err
	}
	if !slices.Contains(v.Replicas, v.Primary) {
		return fmt.Errorf("primary %q is not a replica", v.Primary)
	}
	return nil
}

// validReplicaList checks a non-empty list of distinct host:port addresses.
func validReplicaList(what string, rs []string) error {
	if len(rs) == 0 {
		return errors.New("no " + what + "s")
	}
	seen := map[string]bool{}
	for _, r := range rs {
		if err := validAddr(what, r); err != nil {
			return err
		}
		if seen[r] {
			return fmt.Errorf("%s %s listed twice", what, r)
		}
		seen[r] = true
	}
	return nil
}

func validAddr(what, a string) error {
	if _, _, err := net.SplitHostPort(a); err != nil || a == "" {
		return fmt.Errorf("%s %q is not host:port", what, a)
	}
	return nil
}
