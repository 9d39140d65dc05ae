#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Gateway
import Netns
import GatewayCore
import Dispatch
import Logging
import ServiceLifecycle

/// `airlock gateway`: serve the gateways of persistent sandboxes, one or all in one daemon.
struct GatewayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Serve the gateway of a persistent sandbox, or of all of them in one daemon (serve --all, managed with request).",
        subcommands: [Serve.self, Request.self]
    )

    /// `airlock gateway serve NAME`
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            _superCommandName: "airlock gateway",
            abstract: "Serve DNS, transparent HTTP/TLS and the proxy for a sandbox made by `airlock netns create`.",
            discussion: """
                Binds the listeners inside the sandbox's gateway namespace (DNS 53 udp+tcp, HTTP 80, \
                TLS 443, proxy 3128, SSH 22 (answered with "not offered") on the gateway address), opens the audit log, then drops to \
                --run-as (no capabilities, not dumpable) and serves until SIGTERM or SIGINT, which \
                drain open connections. A port a reload allows gets its transparent listener from a \
                helper forked before the drop, which runs as --run-as with CAP_NET_BIND_SERVICE alone \
                and can only bind TCP listeners on the gateway address. The policy: --policy FILE alone, else /etc/airlock/policy \
                and /etc/airlock/policy.d/*.conf (bytewise name order; missing files are fine). It \
                is reloaded on SIGHUP and when a file changes, appears or disappears; a file that \
                does not parse keeps the old policy. Every file, the policy.d directory and the \
                directories above them must be root-owned and not group- or world-writable, and \
                the files must stay readable by the --run-as user for reloads. Live git sessions are kept in /run/airlock/NAME/sessions (root, 0600; \
                token digests and the upstream tokens) and restored at the next start; revoked and \
                expired ones are not. Started by systemd with Type=notify, it reports \
                READY=1 once every listener serves (sd_notify over $NOTIFY_SOCKET). Requires root (CAP_SYS_ADMIN, CAP_NET_BIND_SERVICE, \
                CAP_SETUID, CAP_SETGID, CAP_SETPCAP).

                With --all instead of NAME: one daemon serves every complete sandbox in \
                /run/airlock, each as `gateway serve NAME` would (its own listeners, policy, \
                sessions, control socket, limits and audit denial budget), on shared event \
                loops and socket loops, so an added sandbox costs no thread. A sandbox's policy \
                is --policy-dir DIR's DIR/NAME.policy when that file exists, else the default \
                policy files. Audit lines of every sandbox go to the one log (--audit-log or \
                stderr), each naming its sandbox. Root manages it through \
                /run/airlock/gateway.sock (0600): `airlock gateway request serve NAME \
                [--policy FILE]`, `stop NAME`, `reload NAME`, `list`; every request is audited \
                (daemon_request) with the caller's uid and pid. SIGHUP reloads every policy; \
                SIGTERM drains every sandbox. A helper forked before the drop (uid 0 with \
                CAP_SYS_ADMIN and CAP_NET_BIND_SERVICE alone) opens a sandbox's listeners, \
                control socket and session file by its name; see docs/deploy.md.

                With --users GROUP as well: members of GROUP make, use and destroy their own \
                sandboxes without root through /run/airlock/users.sock (root:GROUP 0660) with \
                `airlock sandbox create|exec|destroy|list`, and `airlock run` uses it where user \
                namespaces are unavailable. A root helper forked before the drop serves it; \
                each sandbox belongs to the uid that made it, commands run as their caller, \
                and every request is audited (user_request) with the caller's uid and pid. \
                See docs/user-access.md.
                """
        )

        @Argument(help: "The sandbox name, as given to `airlock netns create` (or --all).")
        var name: String?

        @Flag(name: .long, help: "Serve every sandbox made by `airlock netns create`, in one daemon.")
        var all = false

        @Option(name: .long, help: ArgumentHelp("With --all: the policy of sandbox NAME is DIR/NAME.policy when that file exists.", valueName: "dir"))
        var policyDir: String?

        @Option(name: .long, help: ArgumentHelp("With --all: members of this group (name or gid) make and use their own sandboxes through /run/airlock/users.sock.", valueName: "group"))
        var users: String?

        @OptionGroup var options: GatewayOptions

        @Option(name: .long, help: ArgumentHelp("The user to serve as after binding.", valueName: "user"))
        var runAs: String = "nobody"

        @Option(name: .long, help: ArgumentHelp("Serve Prometheus metrics at http://ADDRESS:PORT/metrics, bound in the host's network namespace before the privilege drop (the sandbox cannot reach it). See docs/metrics.md.", valueName: "address:port"))
        var metricsListen: String?

        @Option(name: .long, help: ArgumentHelp("Write the metrics for node-exporter's textfile collector to this file (written as PATH.tmp, then renamed); its directory must be writable by --run-as.", valueName: "path"))
        var metricsTextfile: String?

        @Option(name: .long, help: ArgumentHelp("Seconds between writes of --metrics-textfile.", valueName: "seconds"))
        var metricsInterval: Int = 15

        func validate() throws {
            if all {
                guard name == nil else { throw ValidationError("give a sandbox NAME or --all, not both") }
                guard options.policy == nil else { throw ValidationError("--policy names one sandbox's policy; with --all use --policy-dir") }
                guard metricsListen == nil, metricsTextfile == nil else { throw ValidationError("--metrics-listen and --metrics-textfile are not offered with --all") }
            } else {
                guard name != nil else { throw ValidationError("give a sandbox NAME, or --all") }
                guard policyDir == nil else { throw ValidationError("--policy-dir goes with --all; for one sandbox use --policy") }
                guard users == nil else { throw ValidationError("--users goes with --all: the daemon makes the sandboxes users ask for") }
            }
        }

        func run() throws {
            try reportingErrors(exitCode: { error in
                if case SandboxError.notFound = error { return ExitCodes.notFound }
                if error is Privileges.PrivilegeError { return ExitCodes.permission }
                return nil
            }) {
                // Held before anything is bound: see ShutdownSignals.
                ShutdownSignals.hold()
                if all {
                    try serveAll()
                } else {
                    try serve()
                }
            }
        }

        private func serveAll() throws {
            try Privileges.requireRoot(
                for: "airlock gateway serve --all",
                capabilities: [.sysAdmin, .netBindService, .setuid, .setgid, .setpcap])
            let user = try Users.lookup(runAs)
            if let policyDir {
                guard policyDir.hasPrefix("/") else { throw CLIError("--policy-dir \(policyDir): expected an absolute path") }
                if let weak = PathSafety.changeableByNonRoot(policyDir) {
                    throw CLIError("--policy-dir \(policyDir): \(weak) can be changed by an account other than root; make it root-owned and not group- or world-writable")
                }
            }
            _ = try options.flagPolicy()
            // Read as root, like `gateway serve`'s; shared by every sandbox.
            let upstreams = try GatewayRuntime.upstreams(options: options)
            // The one audit sink; each sandbox writes to it with its own denial budget.
            let audit = try options.openAuditLog(sandbox: "-")
            mkdir("/run/airlock", 0o755)
            // Forked first, while the process has one thread and holds nothing but the audit
            // log: the broker keeps its root; the daemon's own descriptors never reach it.
            var broker: UserBroker?
            if let users {
                let group = try UserAccess.group(users)
                let listening = try UserBroker.bindSocket(group: group.gid)
                broker = try UserBroker.start(listening: listening, configuration: UserBroker.Configuration(
                    group: group.gid, groupName: group.name, daemonGroup: user.gid, gitHosts: upstreams.git.hosts, audit: audit))
            }
            defer { broker?.stop() }
            let daemonSocket = try ControlSocket(path: DaemonRequest.socketPath)
            // Forked while the process has one thread, before the drop.
            let opener = try SandboxOpener.start(daemonSocket: DaemonRequest.socketPath)
            defer { opener.stop() }
            let notifier = try SystemdNotifier.fromEnvironment()
            try Privileges.dropProcessPrivileges(to: user)

            // Threads start only after the drop.
            GatewayRuntime.raiseOpenFileLimit()
            let shared = try SharedServing.start()
            defer { shared.shutdown() }
            let daemon = GatewayDaemon(opener: opener, shared: shared, options: options, policyDirectory: policyDir, audit: audit,
                                       upstreams: upstreams)
            // A run's sandbox left by a daemon that died is the broker's to remove, not to serve.
            for summary in PersistentSandbox().list() where summary.status == .complete && !UserBrokerConnection.isLeftRun(summary.name) {
                do {
                    try daemon.serve(summary.name.rawValue, policy: nil)
                } catch {
                    printNotice("airlock: \(summary.name.rawValue) not served: \(error)")
                }
            }
            let served = daemon.list().count
            print("airlock: gateway daemon ready on \(DaemonRequest.socketPath) (\(served) sandbox\(served == 1 ? "" : "es"))"
                  + (users.map { "; sandboxes for group \($0) on \(UserRequest.socketPath)" } ?? ""))
            fflush(stdout)
            notifier?.ready(status: "serving \(served) sandboxes")
            let serviceGroup = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [.init(service: DaemonServer(socket: daemonSocket, daemon: daemon, audit: audit, group: shared.group), serviceName: "DaemonServer")],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: Logger(label: "airlock.daemon")))
            let finished = DispatchSemaphore(value: 0)
            let failure = ErrorBox()
            Task {
                do { try await serviceGroup.run() } catch { failure.set(error) }
                finished.signal()
            }
            finished.wait()
            notifier?.stopping()
            daemon.stopAll()
            if let error = failure.get() { throw error }
        }

        private func serve() throws {
            let sandboxName = try NamespaceName(name ?? "")
            try Privileges.requireRoot(
                for: "airlock gateway serve",
                capabilities: [.sysAdmin, .netBindService, .setuid, .setgid, .setpcap])
            let user = try Users.lookup(runAs)
            let state = try PersistentSandbox().load(name: sandboxName)
            let gatewayIPv4 = state.topology.gatewayAddress.address
            guard let gatewayAddress = IPAddress(gatewayIPv4.description) else {
                throw CLIError("gateway address \(gatewayIPv4) is not usable")
            }
            let sandbox = sandboxName.rawValue
            // The gateway re-reads its policy: no account but root may be able to change a
            // file of it, the drop-in directory, or where a missing file would go.
            let policyFiles = options.policyFiles(root: true)
            if let policyFiles { try GatewayOptions.refusalOfNonRootPaths(policyFiles, reloads: true) }
            if let metricsListen { _ = try MetricsListener.parse(metricsListen) }
            guard (1...86400).contains(metricsInterval) else {
                throw CLIError("--metrics-interval \(metricsInterval): expected 1 to 86400 seconds")
            }
            let metrics = metricsListen != nil || metricsTextfile != nil ? GatewayMetrics(sandbox: sandbox) : nil
            // Every flag is checked and every file opened before anything is bound.
            let runtime = try GatewayRuntime(
                sandbox: sandbox, gatewayAddress: gatewayAddress, options: options, policyFiles: policyFiles,
                policyCheck: GatewayOptions.rootOnlyPaths, metrics: metrics)

            let gatewayNamespace = try NetworkNamespace.open(path: state.gatewayPin)
            let sockets = try GatewaySockets.bind(in: gatewayNamespace.descriptor, address: gatewayIPv4, ports: runtime.listenerPorts)
            // A reload may allow new ports, which the dropped gateway cannot bind in G: a
            // helper forked now, as --run-as with CAP_NET_BIND_SERVICE alone, binds them.
            let binder = try PortBinder.start(in: gatewayNamespace.descriptor, address: gatewayIPv4, user: user)
            defer { binder.stop() }
            try gatewayNamespace.close()
            // The metrics listener: bound here, in the host namespace, while still privileged.
            let metricsListener = try metricsListen.map(MetricsListener.bind)

            // The control socket lives under /run/airlock/NAME: bound before the privilege
            // drop (binding starts no thread), served after it.
            let controlSocket = try ControlSocket(path: ControlSocket.path(sandbox: sandbox))
            let startedBy = getuid()
            // The session file: opened and read as root (it is root's, mode 0600), kept open
            // to record every change after the drop. After the port binder's fork, so the
            // helper never holds it.
            let sessionFile = try SessionJournal(path: SessionJournal.path(sandbox: sandbox), warn: { printNotice($0) })
            let restored = runtime.sessions.restore(from: sessionFile)
            if restored > 0 { printNotice("airlock: restored \(restored) live session\(restored == 1 ? "" : "s") from \(sessionFile.path)") }
            // systemd (Type=notify): connected now, while the notify socket is still reachable.
            let notifier = try SystemdNotifier.fromEnvironment()

            try Privileges.dropProcessPrivileges(to: user)

            // Written once now, as --run-as: a directory it cannot write fails here, not later.
            let textfile = metrics.flatMap { metrics in
                metricsTextfile.map { MetricsTextfile(path: $0, metrics: metrics, interval: .seconds(metricsInterval)) }
            }
            do {
                try textfile?.write()
            } catch {
                throw CLIError("\(error) (the directory must be writable by \(runAs))")
            }

            // Threads start only after the drop: setuid reaches every thread, capabilities
            // only the calling one.
            let extraPorts = runtime.listenerPorts.isEmpty ? ""
                : ", port\(runtime.listenerPorts.count == 1 ? "" : "s") " + runtime.listenerPorts.map(String.init).joined(separator: " ")
            let readyLine = "airlock: gateway for \(sandbox) ready on \(gatewayAddress) (dns 53, http 80, tls 443, proxy 3128, ssh 22\(extraPorts))"
            runtime.start(
                listeners: GatewayListeners(ordered: sockets.all.map(\.descriptor.rawValue), ports: runtime.listenerPorts),
                extraServices: { group in
                    var services: [any Service] = []
                    if let metrics, let metricsListener {
                        services.append(MetricsServer(listener: metricsListener, metrics: metrics, group: group))
                    }
                    if let textfile { services.append(textfile) }
                    return services + [ControlServer(
                        socket: controlSocket,
                        responder: ControlResponder(
                            sandbox: sandbox, sessions: runtime.sessions, gitHosts: runtime.gitUpstreams.hosts,
                            secrets: runtime.secrets, audit: runtime.audit, policy: runtime.policy),
                        allowedUIDs: [startedBy], audit: runtime.audit, group: group)]
                },
                shutdownSignals: [.sigterm, .sigint],
                bindPort: { port in
                    guard let port = UInt16(exactly: port) else { throw CLIError("port \(port) is out of range") }
                    return try binder.bind(port: port).rawValue
                },
                ready: {
                    print(readyLine)
                    fflush(stdout)
                    notifier?.ready(status: "serving \(sandbox) on \(gatewayAddress)")
                })
            options.learnStartNotice.map(printNotice)
            defer { options.learnEndNotice.map(printNotice) }
            defer { notifier?.stopping() }
            try runtime.wait()
        }
    }
}

extension GatewayCommand {
    /// `airlock gateway request serve|stop|reload|list`: one request to the gateway daemon.
    struct Request: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "request",
            _superCommandName: "airlock gateway",
            abstract: "Ask the gateway daemon (`gateway serve --all`) to serve, stop or reload a sandbox, or list them.",
            discussion: """
                Sends one request to /run/airlock/gateway.sock (root only) and prints the answer: \
                nothing for serve, stop and reload, one line per sandbox for list (NAME ADDRESS \
                POLICY). A refusal is printed on stderr as one line, exit 1.
                """
        )

        @Argument(help: ArgumentHelp("serve, stop, reload or list.", valueName: "operation"))
        var operation: String

        @Argument(help: "The sandbox (not for list).")
        var name: String?

        @Option(name: .long, help: ArgumentHelp("serve: the sandbox's policy file (root's alone), instead of the daemon's default for it.", valueName: "file"))
        var policy: String?

        func run() throws {
            try reportingErrors(exitCode: { error in
                if let error = error as? ControlClientError {
                    if error.notFound { return ExitCodes.notFound }
                    if error.permission { return ExitCodes.permission }
                }
                return nil
            }) {
                let request: DaemonRequest
                switch (operation, name) {
                case ("list", nil): request = .list
                case ("serve", let name?):
                    // The daemon runs elsewhere: a relative path is the caller's.
                    let absolute = policy.map { path in path.hasPrefix("/") ? path : NetnsExec.currentDirectory().map { $0 + "/" + path } ?? path }
                    request = .serve(sandbox: name, policy: absolute)
                case ("stop", let name?): request = .stop(sandbox: name)
                case ("reload", let name?): request = .reload(sandbox: name)
                case ("list", _): throw CLIError("list takes no sandbox")
                case ("serve", nil), ("stop", nil), ("reload", nil): throw CLIError("\(operation) needs a sandbox name")
                default: throw CLIError("unknown operation \(operation); expected serve, stop, reload or list")
                }
                if policy != nil, operation != "serve" { throw CLIError("--policy goes with serve") }
                switch try ControlClient.send(request) {
                case .done: break
                case let .sandboxes(list):
                    for one in list { print("\(one.sandbox) \(one.address) \(one.policy ?? "-")") }
                case let .failure(message): throw CLIError(message)
                }
            }
        }
    }
}
