# Sourced by the scripts: puts Swift on PATH when it is installed but not on it, as
# under `sudo`, whose secure_path drops /opt/swift/usr/bin. Fails with the exact fix
# when Swift is not installed at all.
airlock_find_swift() {
  command -v swift >/dev/null 2>&1 && return 0
  local candidate
  for candidate in /opt/swift/usr/bin /usr/share/swift/usr/bin /usr/local/swift/usr/bin \
                   "${SUDO_HOME:-}/.local/share/swiftly/bin" "/home/${SUDO_USER:-nobody}/.local/share/swiftly/bin" \
                   /root/.local/share/swiftly/bin /opt/swift*/usr/bin; do
    if [ -x "$candidate/swift" ]; then
      PATH="$candidate:$PATH"
      export PATH
      echo "note: swift was not on PATH; using $candidate/swift" >&2
      return 0
    fi
  done
  echo "error: swift is not installed or not on PATH (looked in /opt/swift/usr/bin and other usual places)." >&2
  echo "       Install Swift 6 (https://www.swift.org/install/linux/), or if it is installed elsewhere run:" >&2
  echo "       sudo env PATH=\"\$(dirname \"\$(command -v swift)\"):\$PATH\" $0 $*" >&2
  return 1
}
