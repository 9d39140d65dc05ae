# Sourced by the scripts: `airlock_build ARGS…` runs `swift build ARGS…` showing progress
# every hundred steps (a first build takes minutes; it must not look stuck), and on failure
# prints the errors and returns non-zero.
# Every build: the loader searches only the system's directories (no `$ORIGIN` run path).
airlock_build_flags=(--disable-local-rpath)
airlock_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
airlock_build() {
  local log status arg
  airlock_static_libs
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

# The archives the airlock binary links in place of shared libraries (Package.swift,
# lightStartLinking): .build/static-libs holds only archives, so the linker takes them over
# the shared libraries next to them in the system's directories. Made by every build, not
# only by scripts/setup: a `.build` removed and rebuilt without them links the shared
# libraries, and starts every process slower (0.55 ms of `--version`), silently. libmnl has
# no archive on Debian and stays shared.
airlock_static_libs() {
  local dir="$airlock_root/.build/static-libs" archive path
  mkdir -p "$dir"
  for archive in libstdc++.a libz.a libcap.a libseccomp.a; do
    path=$(clang -print-file-name="$archive" 2>/dev/null || true)
    if [ "${path#/}" != "$path" ] && [ -f "$path" ]; then
      [ "$(readlink "$dir/$archive" 2>/dev/null)" = "$path" ] || ln -sfn "$path" "$dir/$archive"
    else
      rm -f "$dir/$archive"
      echo "build: no $archive on this machine; airlock links its shared library instead" >&2
    fi
  done
}

# How release binaries are built (scripts/install, scripts/bench): self-contained, and every
# function in its own section, so the link can lay out by link/airlock.order (Package.swift).
# Generic types are made by their metadata accessors, not from mangled names: the compiler's
# default (smaller code) has the runtime demangle `Option<Int>` or `EventLoopFuture<Void>`
# at its first use and check each generic requirement by walking all 6,000 protocol
# conformance records; a fifth of the instructions of `run -- true` (docs/benchmarks.md).
airlock_release_flags=(-c release --static-swift-stdlib -Xswiftc -Xfrontend -Xswiftc -function-sections
                       -Xswiftc -Xfrontend -Xswiftc -disable-concrete-type-metadata-mangled-name-accessors
                       -Xcc -ffunction-sections)

# SwiftPM does not recompile when only -Xswiftc/-Xcc flags change: objects built without a
# section per function would stay in .build, and the layout by link/airlock.order would
# silently not apply (the executable links, most of its code in one section per object).
# `airlock_release_prepare` therefore throws the release objects away when the compile flags
# differ from the ones they were built with (recorded in the release directory itself).
# Link-only flags (--static-swift-stdlib) do not count. Nor does SwiftPM relink when only
# link/airlock.order or link/local-functions.ld changes (the link command names neither as
# an input), so the executable is removed when they, or the archives in .build/static-libs,
# differ from the ones it was linked with.
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
  # The archives count too, by where they point: a binary linked before they were there, or
  # against other ones, is linked again.
  order=$( (cat link/airlock.order link/local-functions.ld
            for archive in "$airlock_root"/.build/static-libs/*.a; do echo "$archive -> $(readlink "$archive")"; done) |
           sha256sum | cut -d' ' -f1)
  if [ "$(cat "$dir/.airlock-link-order" 2>/dev/null)" != "$order" ]; then
    rm -f "$dir/airlock"
    printf '%s' "$order" >"$dir/.airlock-link-order"
  fi
}
