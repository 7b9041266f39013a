package csi

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseParams(t *testing.T) {
	p, err := parseParams(map[string]string{"replication": "001", "collection": "pg", "uid": "1000", "gid": "100", "mode": "0770",
		"csi.storage.k8s.io/pvc/name": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Replication != "001" || p.Collection != "pg" || *p.UID != 1000 || *p.GID != 100 || *p.Mode != 0o770 {
		t.Fatalf("parsed %+v", p)
	}
	for params, want := range map[*map[string]string]string{
		{"replication": "01"}:      `"replication" = "01": want three digits`,
		{"uid": "nobody"}:          `"uid" = "nobody": want a numeric id`,
		{"gid": "-1"}:              `"gid" = "-1"`,
		{"mode": "0999"}:           `"mode" = "0999": want octal`,
		{"mode": "17777"}:          `"mode" = "17777"`,
		{"collection": "a/b"}:      `"collection" = "a/b"`,
		{"fsType": "ext4"}:         `parameter "fsType" is not known`,
		{"replicas": "3"}:          `parameter "replicas" is not known`,
		{"replication": "0001x"}:   `"replication"`,
		{"collection": "", "": ""}: `"" is not known`,
	} {
		_, err := parseParams(*params)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), want) {
			t.Errorf("parseParams(%v) = %v, want InvalidArgument saying %s", *params, err, want)
		}
	}
}

func TestCapacity(t *testing.T) {
	for _, c := range []struct {
		req, lim int64
		want     uint64
		code     codes.Code
	}{
		{0, 0, 0, codes.OK},
		{1, 0, 1 << 20, codes.OK},
		{1 << 20, 0, 1 << 20, codes.OK},
		{(1 << 20) + 1, 0, 2 << 20, codes.OK},
		{1000, 2000, 1000, codes.OK}, // rounding would pass the limit
		{0, 5000, 5000, codes.OK},
		{3000, 2000, 0, codes.OutOfRange},
	} {
		got, err := capacityFor(&csi.CapacityRange{RequiredBytes: c.req, LimitBytes: c.lim})
		if status.Code(err) != c.code || got != c.want {
			t.Errorf("capacityFor(%d, %d) = %d, %v; want %d, %v", c.req, c.lim, got, err, c.want, c.code)
		}
		if c.code == codes.OK && !fits(got, &csi.CapacityRange{RequiredBytes: c.req, LimitBytes: c.lim}) {
			t.Errorf("capacity %d does not fit the range it was made for (%d, %d)", got, c.req, c.lim)
		}
	}
}

func TestCapabilities(t *testing.T) {
	block := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	if err := checkCapability(block); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "block access is not supported") {
		t.Fatalf("block: %v", err)
	}
	for m := range csi.VolumeCapability_AccessMode_Mode_name {
		c := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_Mode(m)}}
		err := checkCapability(c)
		if (m == 0) != (err != nil) {
			t.Errorf("access mode %v: %v", csi.VolumeCapability_AccessMode_Mode(m), err)
		}
	}
	ext4 := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}
	if err := checkCapability(ext4); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("fs_type ext4: %v", err)
	}
}

func TestTokens(t *testing.T) {
	for _, s := range []string{"a", "vol-1", "x y"} {
		got, err := decodeToken(encodeToken(s))
		if err != nil || got != s {
			t.Fatalf("token round trip of %q = %q, %v", s, got, err)
		}
	}
	for _, bad := range []string{"invalid-token", "aGVsbG8", "%%%"} {
		if _, err := decodeToken(bad); status.Code(err) != codes.Aborted {
			t.Errorf("decodeToken(%q) = %v, want Aborted", bad, err)
		}
	}
}

// TestLogStripsSecrets: every call is logged with its volume and outcome,
// and secrets never reach the log.
func TestLogStripsSecrets(t *testing.T) {
	var buf bytes.Buffer
	d := &Driver{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), met: newMetrics()}
	req := &csi.NodeStageVolumeRequest{VolumeId: "vol-7", StagingTargetPath: "/s", Secrets: map[string]string{"password": "hunter2"}}
	_, err := d.logCall(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Node/NodeStageVolume"},
		func(context.Context, any) (any, error) {
			return nil, status.Error(codes.NotFound, "volume \"vol-7\" does not exist")
		})
	if status.Code(err) != codes.NotFound {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Fatalf("secret in the log:\n%s", out)
	}
	for _, want := range []string{"call=NodeStageVolume", "volume=vol-7", "code=NotFound", "stripped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestSocketPath(t *testing.T) {
	for in, want := range map[string]string{"unix:///csi/csi.sock": "/csi/csi.sock", "unix:/a/b.sock": "/a/b.sock", "/x.sock": "/x.sock"} {
		if got, err := socketPath(in); err != nil || got != want {
			t.Errorf("socketPath(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "tcp://1.2.3.4:5", "unix://rel.sock"} {
		if _, err := socketPath(bad); err == nil {
			t.Errorf("socketPath(%q) accepted", bad)
		}
	}
}
