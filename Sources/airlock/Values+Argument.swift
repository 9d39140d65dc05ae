import ArgumentParser
import Netns

// Validated values as command-line arguments. A failed parse prints swift-argument-parser's
// usage error; commands that want airlock's one-line error take a String and call the
// throwing initialiser inside `reportingErrors` (see `airlock netns create`).

extension NamespaceName: ExpressibleByArgument {
    /// Parses a sandbox name; nil if invalid.
    public init?(argument: String) { try? self.init(argument) }
}

extension InterfaceName: ExpressibleByArgument {
    /// Parses an interface name; nil if invalid.
    public init?(argument: String) { try? self.init(argument) }
}

extension IPv4Address: ExpressibleByArgument {
    /// Parses a dotted-quad IPv4 address; nil if invalid.
    public init?(argument: String) { try? self.init(argument) }
}

extension IPv4CIDR: ExpressibleByArgument {
    /// Parses `A.B.C.D/P`; nil if invalid.
    public init?(argument: String) { try? self.init(argument) }
}

/// Exit codes for the errors of the `Netns` library: a missing sandbox exits 3, missing
/// privileges 4, a refused value 64 (like a usage error); everything else 1.
func netnsExitCode(_ error: Error) -> Int32? {
    switch error {
    case SandboxError.notFound: return ExitCodes.notFound
    case is Privileges.PrivilegeError: return ExitCodes.permission
    case is InvalidValue: return ExitCodes.usage
    default: return nil
    }
}
