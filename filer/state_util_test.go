package filer

import (
	"encoding/hex"
	"encoding/json"
)

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func hexString(b []byte) string { return hex.EncodeToString(b) }
