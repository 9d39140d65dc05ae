# Sourced by the scripts: `airlock_build ARGS…` runs `swift build ARGS…` showing progress
# every hundred steps (a first build takes minutes; it must not look stuck), and on failure
# prints the errors and returns non-zero.
# Every build: the loader searches only the system's directories (no `$ORIGIN` run path).
airlock_build_flags=(--disable-local-rpath)
airlock_build() {
  local log status arg
  for arg in "$@"; do
    if [ "$arg" = release ]; then airlock_release_prepare || return 1; break; fi
  done
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

# SwiftPM does not recompile when only -Xswiftc/-Xcc flags change: objects built without a
# section per function would stay in .build, and the layout by link/airlock.order would
# silently not apply (the executable links, most of its code in one section per object).
# `airlock_release_prepare` therefore throws the release objects away when the compile flags
# differ from the ones they were built with (recorded in the release directory itself).
# Link-only flags (--static-swift-stdlib) do not count. Nor does SwiftPM relink when only
# link/airlock.order or link/local-functions.ld changes (the link command names neither as
# an input), so the executable is removed when they differ from the ones it was linked with.
# `airlock_build` runs it for every release build (`-c release`).
airlock_release_prepare() {
  local dir stamp want order
  dir=$(swift build -c release --show-bin-path) || return 1
  stamp="$dir/.airlock-compile-flags"
  want=$(printf '%s ' "${airlock_release_flags[@]}" | sed 's/--static-swift-stdlib //')
  if [ -d "$dir" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "  release objects were compiled with other flags: rebuilding them all (${want% })"
    rm -rf "$dir"
  fi
  mkdir -p "$dir"
  printf '%s' "$want" >"$stamp"
  order=$(cat link/airlock.order link/local-functions.ld | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$dir/.airlock-link-order" 2>/dev/null)" != "$order" ]; then
    rm -f "$dir/airlock"
    printf '%s' "$order" >"$dir/.airlock-link-order"
  fi
}
