/// A policy that could not be read or parsed, with where and what.
///
/// Prints as `policy.txt:4: unknown preset @pipy (known: …)`; for command-line flags the
/// file is the flag, such as `--allow-private: …`.
package struct PolicyError: Error, CustomStringConvertible, Equatable {
    /// The policy file path, or the flag the rule came from.
    package var file: String
    /// The 1-based line number; 0 when the problem is not on one line.
    package var line: Int
    /// What is wrong, one line.
    package var message: String

    package init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    package var description: String {
        line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)"
    }
}
