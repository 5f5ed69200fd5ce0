//go:build !linux

package caddymodule

import "time"

func postgresCPU() time.Duration { return 0 }
