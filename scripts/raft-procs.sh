#!/usr/bin/env bash
# Shared by the Raft process scripts (sourced, not run): the shoal binary ($1 or the debug build),
# a random port base, a scratch directory, and a cleanup that kill -9s every process recorded in
# PIDS and removes the directory, even when the script fails.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHOAL=${1:-.build/debug/shoal}
BASE=${SHOAL_RAFT_PORT_BASE:-$((20000 + RANDOM % 20000))}
DIR=$(mktemp -d "/tmp/shoal-raft-${RAFT_SCRIPT_TAG:-proc}.XXXXXX")
declare -A PIDS
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
