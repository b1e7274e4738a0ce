//go:build !linux

/*
 * SPDX-FileCopyrightText: © Hypermode Inc. <hello@hypermode.com>
 * SPDX-License-Identifier: Apache-2.0
 */

// Added by Lumen (third_party/ristretto.patch): off Linux, files are
// extended as before, without a reservation.

package z

import "os"

func reserve(f *os.File, off, n int64) error {
	unreservedFiles.Add(1)
	return extend(f, off+n)
}

func reserveExisting(*os.File, int64) error { return nil }
