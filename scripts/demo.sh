#!/usr/bin/env bash
# The demo: what nixboot can do so far, run for real.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./examples/ipxescript
