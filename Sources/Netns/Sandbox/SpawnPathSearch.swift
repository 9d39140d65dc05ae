/// Which files the sandbox tries to execute for a command, in order, like execvp.
package enum ExecutableSearch {
    /// The paths to try for `command` with the sandbox's `PATH`: the command itself when it
    /// holds a `/`, else each `PATH` entry joined with it (an empty entry means the current
    /// directory); an unset `PATH` falls back to the standard directories.
    package static func candidates(for command: String, path: String?) -> [String] {
        if command.isEmpty { return [] }
        if command.contains("/") { return [command] }
        let searchPath = path ?? "/usr/local/bin:/usr/bin:/bin"
        return searchPath.split(separator: ":", omittingEmptySubsequences: false).map { entry in
            let directory = entry.isEmpty ? "." : String(entry)
            return directory.hasSuffix("/") ? directory + command : directory + "/" + command
        }
    }
}
