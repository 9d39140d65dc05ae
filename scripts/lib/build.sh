# Sourced by the scripts: `airlock_build ARGS…` runs `swift build ARGS…` showing progress
# every hundred steps (a first build takes minutes; it must not look stuck), and on failure
# prints the errors and returns non-zero.
# Every build: the loader searches only the system's directories (no `$ORIGIN` run path).
airlock_build_flags=(--disable-local-rpath)
airlock_build() {
  local log status
  log=$(mktemp)
  set +e
  swift build "${airlock_build_flags[@]}" "$@" 2>&1 | tee "$log" | awk '
    /^\[[0-9]+\/[0-9]+\]/ { split(substr($1, 2), step, "/"); if (step[1] - last >= 100) { print "  " $1; fflush(); last = step[1] } }
    /^Build / { print; fflush() }'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" != 0 ]; then
    grep -E 'error|warning: unre' "$log" | head -50 >&2 || tail -50 "$log" >&2
    echo "build failed: swift build $*" >&2
  fi
  rm -f "$log"
  return "$status"
}

# How release binaries are built (scripts/install, scripts/bench): self-contained, and every
# function in its own section, so the link can lay out by link/airlock.order (Package.swift).
airlock_release_flags=(-c release --static-swift-stdlib -Xswiftc -Xfrontend -Xswiftc -function-sections
                       -Xcc -ffunction-sections)
