import ArgumentParser
import FoundationEssentials
import Netns
import GatewayCore

/// `airlock netns …`: persistent sandboxes that outlive the command.
struct NetnsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netns",
        abstract: "Create, list, enter and destroy persistent sandbox namespaces.",
        discussion: """
            A persistent sandbox is a network namespace S pinned at /run/netns/NAME whose only \
            peer is a gateway namespace G pinned at /run/netns/NAME.gw, joined by one veth pair \
            (eth0 in S, gw0 in G). S has a single route, to the gateway address; anything else \
            fails at once with "Network is unreachable". State is kept in /run/airlock/NAME. \
            Everything lives under /run, so a reboot removes it too.
            """,
        subcommands: [Create.self, Destroy.self, List.self, GC.self, NetnsExec.self]
    )
}

extension NetnsCommand {
    /// `airlock netns create NAME [--gateway-address A/P] [--sandbox-address A/P] [--json]`
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            _superCommandName: "airlock netns",
            abstract: "Create a persistent sandbox (idempotent).",
            discussion: """
                Makes S (/run/netns/NAME) and G (/run/netns/NAME.gw), one veth pair made in a \
                single request with each end placed directly in its namespace, the two \
                addresses without prefix routes, one host route each way, lo up in both, IPv6 \
                off on both veth ends and forwarding off in G. Records the state in \
                /run/airlock/NAME/state.json.

                Running it again with the same addresses changes nothing ("unchanged"); other \
                addresses are refused. If any step fails, everything made so far is removed. \
                An existing /run/netns/NAME that airlock did not make is refused and left alone.

                NAME: 1-12 bytes of A-Z a-z 0-9 _ . - (NAME.gw must fit an interface name), not ending in .gw or .sock. \
                Addresses: same prefix (/8 to /31), same subnet, distinct, not the network or \
                broadcast address.

                Requires root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Leaves behind the two pins, \
                the state directory, and the interfaces inside S and G until \
                `airlock netns destroy NAME`.
                """)

        @Argument(help: "The sandbox name.")
        var name: String

        @Option(help: ArgumentHelp("The gateway's address in G.", valueName: "address/prefix"))
        var gatewayAddress: String = SandboxTopology.defaultGatewayAddress.description

        @Option(help: ArgumentHelp("The sandbox's address in S.", valueName: "address/prefix"))
        var sandboxAddress: String = SandboxTopology.defaultSandboxAddress.description

        @Flag(help: "Print the sandbox's state as JSON.")
        var json = false

        func run() throws {
            try reportingErrors(exitCode: netnsExitCode) {
                let name = try NamespaceName(name)
                let topology = try SandboxTopology(
                    gatewayAddress: IPv4CIDR(gatewayAddress), sandboxAddress: IPv4CIDR(sandboxAddress))
                let outcome = try PersistentSandbox().create(name, topology: topology)
                let state = outcome.state
                let created: Bool
                if case .created = outcome { created = true } else { created = false }
                if json {
                    print(try NetnsJSON.encode(CreateReport(outcome: created ? "created" : "unchanged", state: state)))
                } else if created {
                    print("created sandbox \(name): S \(state.sandboxPin) (\(state.topology.sandboxInterface) \(state.topology.sandboxAddress)), G \(state.gatewayPin) (\(state.topology.gatewayInterface) \(state.topology.gatewayAddress))")
                } else {
                    print("sandbox \(name) already exists, unchanged")
                }
            }
        }
    }

    /// `airlock netns destroy NAME`
    struct Destroy: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "destroy",
            _superCommandName: "airlock netns",
            abstract: "Destroy a persistent sandbox.",
            discussion: """
                Removes exactly what create made: both pins (detached, then deleted) and \
                /run/airlock/NAME; also a half-made sandbox. The interfaces, addresses and \
                routes go with the namespaces. Processes still running inside S keep it alive \
                until they exit. A name with no state exits 3.

                Requires root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Leaves nothing behind.
                """)

        @Argument(help: "The sandbox name.")
        var name: String

        func run() throws {
            try reportingErrors(exitCode: netnsExitCode) {
                let removal = try PersistentSandbox().destroy(NamespaceName(name))
                print("destroyed sandbox \(removal.name)\(removal.status == .complete ? "" : " (\(removal.status.rawValue))"): removed \(removal.removed.joined(separator: ", "))")
            }
        }
    }

    /// `airlock netns list [--json]`
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            _superCommandName: "airlock netns",
            abstract: "List persistent sandboxes.",
            discussion: """
                One line per sandbox: name, status (complete, half-made, pins-missing, \
                orphaned-pins), gateway and sandbox addresses. Reads /run/airlock and \
                /run/netns; needs no privileges and changes nothing.
                """)

        @Flag(help: "Print the list as JSON.")
        var json = false

        func run() throws {
            try reportingErrors(exitCode: netnsExitCode) {
                let sandboxes = PersistentSandbox().list()
                if json {
                    print(try NetnsJSON.encode(sandboxes))
                    return
                }
                let rows = [["NAME", "STATUS", "GATEWAY", "SANDBOX"]] + sandboxes.map {
                    [$0.name.rawValue, $0.status.rawValue, $0.gatewayAddress?.description ?? "-", $0.sandboxAddress?.description ?? "-"]
                }
                let widths = (0..<4).map { column in rows.map { $0[column].count }.max() ?? 0 }
                for row in rows {
                    print(row.enumerated().map { index, cell in
                        index == 3 ? cell : cell.padded(toLength: widths[index] + 2)
                    }.joined())
                }
            }
        }
    }

    /// `airlock netns gc`
    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            _superCommandName: "airlock netns",
            abstract: "Remove half-made and orphaned sandboxes.",
            discussion: """
                Removes half-made sandboxes (a create that did not finish), state whose pins \
                are gone, and pins named the airlock way (NAME.gw, with NAME beside it) that \
                have no state. A lone /run/netns/NAME without NAME.gw may belong to \
                `ip netns` and is left alone. Complete sandboxes are not touched. Prints one \
                line per removed sandbox.

                Requires root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Leaves nothing behind.
                """)

        func run() throws {
            try reportingErrors(exitCode: netnsExitCode) {
                let removals = try PersistentSandbox().gc()
                if removals.isEmpty { print("nothing to remove") }
                for removal in removals {
                    print("removed \(removal.name) (\(removal.status.rawValue)): \(removal.removed.joined(separator: ", "))")
                }
            }
        }
    }
}

/// What `airlock netns create --json` prints.
private struct CreateReport: Encodable {
    var outcome: String
    var state: SandboxState
}

/// JSON output of the netns commands: sorted keys, ISO 8601 dates (as state files write them), slashes unescaped.
private enum NetnsJSON {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom(StateDate.encode)
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
