#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Gateway
import GatewayCore
import Netns
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The sandboxes one gateway daemon (`airlock gateway serve --all`) serves, each exactly as
/// `gateway serve NAME` serves it: its own listeners in its G, policy, sessions and session
/// file, control socket, connection limit, unread-tunnel budget and audit denial budget.
/// What they share: the event loops, the name lookup threads, the socket loops and the audit sink.
///
/// Everything a sandbox needs from root (its listeners, control socket and session file)
/// comes from the `SandboxOpener` forked before the privilege drop.
final class GatewayDaemon: Sendable {
    /// One sandbox served.
    private final class Served: @unchecked Sendable {
        let runtime: GatewayRuntime
        let policy: String?
        let address: String
        init(runtime: GatewayRuntime, policy: String?, address: String) {
            self.runtime = runtime
            self.policy = policy
            self.address = address
        }
    }

    private let opener: SandboxOpener
    private let shared: SharedServing
    private let options: GatewayOptions
    private let policyDirectory: String?
    private let audit: AuditLog
    /// Made once: every sandbox has the same upstreams (the flags), and each TLS context
    /// holds the system trust store.
    private let upstreams: GatewayRuntime.Upstreams
    private let served = NIOLockedValueBox<[String: Served]>([:])
    /// Serialises serve and stop of the same names (the opener answers one at a time anyway).
    private let changes = NIOLock()

    /// - Parameters:
    ///   - audit: the shared log; each sandbox gets `audit.forSandbox(NAME)`, with its own
    ///     denial budget.
    ///   - policyDirectory: `--policy-dir`: `DIR/NAME.policy` when present.
    ///   - upstreams: every sandbox's git upstreams and route trust (`GatewayRuntime.upstreams`).
    init(opener: SandboxOpener, shared: SharedServing, options: GatewayOptions, policyDirectory: String?, audit: AuditLog,
         upstreams: GatewayRuntime.Upstreams) {
        self.upstreams = upstreams
        self.opener = opener
        self.shared = shared
        self.options = options
        self.policyDirectory = policyDirectory
        self.audit = audit
    }

    /// The policy file a sandbox gets when none is named: `DIR/NAME.policy` under
    /// `--policy-dir` when it exists, else nil (the default policy files).
    func defaultPolicy(for name: String) -> String? {
        // A sandbox made through the user socket keeps the policy its owner handed in.
        if let named = try? NamespaceName(name) {
            let kept = UserBrokerConnection.Record.policy.path(of: named)
            var info = stat()
            if lstat(kept, &info) == 0, info.st_uid == 0 { return kept }
        }
        guard let policyDirectory else { return nil }
        let path = "\(policyDirectory)/\(name).policy"
        var info = stat()
        return lstat(path, &info) == 0 ? path : nil
    }

    /// Serves sandbox `name` with `policy` (a file), or its default policy.
    /// - Throws: `CLIError` (one line) when the name is not a sandbox, is served already, the
    ///   policy path is not root's alone or does not parse, or a listener cannot be bound;
    ///   nothing is left open then.
    func serve(_ rawName: String, policy: String?) throws {
        let name = try NamespaceName(rawName)
        if let policy, !policy.hasPrefix("/") { throw CLIError("policy \(policy): expected an absolute path") }
        try changes.withLock {
            guard served.withLockedValue({ $0[name.rawValue] }) == nil else {
                throw CLIError("sandbox \(name.rawValue) is served already; stop it first to serve it with another policy")
            }
            let policyPath = policy ?? defaultPolicy(for: name.rawValue)
            var sandboxOptions = options
            sandboxOptions.policy = policyPath
            // The daemon re-reads each policy: no account but root may be able to change it.
            let policyFiles = sandboxOptions.policyFiles(root: true)
            if let policyFiles { try GatewayOptions.refusalOfNonRootPaths(policyFiles, reloads: true) }
            let opened = try opener.open(name)
            var descriptors = opened.listeners + [opened.control, opened.journal]
            var handedOver = false
            defer { if !handedOver { descriptors.forEach { close($0) } } }
            guard let gatewayAddress = IPAddress(opened.gatewayAddress) else {
                throw CLIError("sandbox \(name.rawValue): gateway address \(opened.gatewayAddress) is not usable")
            }
            let runtime = try GatewayRuntime(
                sandbox: name.rawValue, gatewayAddress: gatewayAddress, options: sandboxOptions, policyFiles: policyFiles,
                policyCheck: GatewayOptions.rootOnlyPaths, audit: audit.forSandbox(name.rawValue), upstreams: upstreams)
            var ports: [Int: CInt] = [:]
            for port in runtime.listenerPorts {
                guard let number = UInt16(exactly: port) else { throw CLIError("port \(port) is out of range") }
                let fd = try opener.bind(name, port: number)
                descriptors.append(fd)
                ports[port] = fd
            }
            let control = ControlSocket(path: ControlSocket.path(sandbox: name.rawValue), adopting: opened.control)
            let journal = SessionJournal(path: SessionJournal.path(sandbox: name.rawValue), adopting: opened.journal, warn: { printNotice($0) })
            handedOver = true
            let restored = runtime.sessions.restore(from: journal)
            if restored > 0 { printNotice("airlock: \(name.rawValue): restored \(restored) live session\(restored == 1 ? "" : "s") from \(journal.path)") }
            var listeners = GatewayListeners(ordered: opened.listeners, ports: [])
            listeners.ports = ports
            let sandbox = name.rawValue
            let opener = self.opener
            let sandboxAudit = runtime.audit
            runtime.start(
                listeners: listeners,
                extraServices: { [runtime] group in
                    [ControlServer(
                        socket: control,
                        responder: ControlResponder(
                            sandbox: sandbox, sessions: runtime.sessions, gitHosts: runtime.gitUpstreams.hosts,
                            secrets: runtime.secrets, audit: sandboxAudit, policy: runtime.policy),
                        allowedUIDs: [0], audit: sandboxAudit, group: group)]
                },
                shutdownSignals: [],
                bindPort: { port in
                    guard let port = UInt16(exactly: port) else { throw CLIError("port \(port) is out of range") }
                    return try opener.bind(name, port: port)
                },
                shared: shared)
            do {
                try runtime.awaitReady(timeout: 10)
            } catch {
                throw CLIError("sandbox \(sandbox): \(error)")
            }
            served.withLockedValue { $0[sandbox] = Served(runtime: runtime, policy: policyPath, address: opened.gatewayAddress) }
            print("airlock: gateway for \(sandbox) ready on \(gatewayAddress)\(policyPath.map { " (policy \($0))" } ?? "")")
            fflush(stdout)
        }
    }

    /// Stops serving `name`: its listeners close, its open connections drain (bounded by the
    /// drain timeout); every other sandbox carries on. Not served is not an error.
    func stop(_ rawName: String) throws {
        let name = try NamespaceName(rawName)
        try changes.withLock {
            guard let one = served.withLockedValue({ $0.removeValue(forKey: name.rawValue) }) else { return }
            one.runtime.shutdown()
            try one.runtime.wait()
        }
    }

    /// Re-reads the policy of `name`.
    /// - Throws: `CLIError` when it is not served, or its policy does not load (the old one stays).
    func reload(_ rawName: String) throws {
        let name = try NamespaceName(rawName)
        guard let one = served.withLockedValue({ $0[name.rawValue] }) else {
            throw CLIError("sandbox \(name.rawValue) is not served by this daemon")
        }
        if let refusal = one.runtime.policy?.reloadRefusal() {
            throw CLIError("sandbox \(name.rawValue): \(refusal)")
        }
    }

    /// The sandboxes served, by name.
    func list() -> [ServedSandbox] {
        served.withLockedValue { all in
            all.map { ServedSandbox(sandbox: $0.key, policy: $0.value.policy, address: $0.value.address) }
                .sorted { $0.sandbox < $1.sandbox }
        }
    }

    /// Answers one request from a caller already let in (`DaemonPeer.allows`).
    func respond(to request: DaemonRequest) -> DaemonResponse {
        do {
            switch request {
            case let .serve(sandbox, policy): try serve(sandbox, policy: policy)
            case let .stop(sandbox): try stop(sandbox)
            case let .reload(sandbox): try reload(sandbox)
            case .list: return .sandboxes(list())
            }
            return .done
        } catch {
            return .failure(String(describing: error))
        }
    }

    /// Stops every sandbox, all draining at once.
    func stopAll() {
        let all = served.withLockedValue { all -> [Served] in
            defer { all = [:] }
            return Array(all.values)
        }
        for one in all { one.runtime.shutdown() }
        for one in all { _ = try? one.runtime.wait() }
    }
}

/// Who may use the gateway daemon's socket: the one place that decides.
enum DaemonPeer {
    /// Whether a caller with `uid` (from `SO_PEERCRED`) is served: root only, for now.
    static func allows(uid: UInt32) -> Bool {
        uid == 0
    }

    /// The refusal a caller gets.
    static func refusal(uid: UInt32) -> String {
        "permission denied: uid \(uid) may not use the gateway daemon (root only)"
    }
}

/// Serves the gateway daemon's socket (`DaemonRequest.socketPath`, root, 0600): one request
/// line per connection, answered with one `DaemonResponse` line. The caller's uid and pid
/// (`SO_PEERCRED`) are checked (`DaemonPeer`) and written with every request to the audit
/// log (`daemon_request`).
final class DaemonServer: Service {
    private let descriptor: CInt
    private let path: String
    private let daemon: GatewayDaemon
    private let audit: AuditLog
    private let group: any EventLoopGroup

    init(socket: ControlSocket, daemon: GatewayDaemon, audit: AuditLog, group: any EventLoopGroup) {
        self.descriptor = socket.descriptor
        self.path = socket.path
        self.daemon = daemon
        self.audit = audit
        self.group = group
    }

    func run() async throws {
        let daemon = self.daemon, audit = self.audit
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(DaemonConnectionHandler(daemon: daemon, audit: audit))
                    }
                }
                .withBoundSocket(descriptor).get()
        } catch {
            close(descriptor)
            throw CLIError("cannot serve the daemon socket \(path): \(error)")
        }
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

/// One connection to the daemon socket: the peer check, then one request line.
private final class DaemonConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let daemon: GatewayDaemon
    private let audit: AuditLog
    private var buffer = ByteBuffer()
    private var peer: (uid: UInt32, pid: Int32)?
    private var answered = false

    init(daemon: GatewayDaemon, audit: AuditLog) {
        self.daemon = daemon
        self.audit = audit
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let provider = context.channel as? any SocketOptionProvider else {
            finish(context: context, .failure("permission denied: cannot read the caller's credentials"), op: nil, sandbox: nil)
            return
        }
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        future.whenComplete { result in
            let (handler, context) = loopBound.value
            guard case let .success(credentials) = result else {
                handler.finish(context: context, .failure("permission denied: cannot read the caller's credentials"), op: nil, sandbox: nil)
                return
            }
            handler.peer = (credentials.uid, credentials.pid)
            guard DaemonPeer.allows(uid: credentials.uid) else {
                handler.finish(context: context, .failure(DaemonPeer.refusal(uid: credentials.uid)), op: nil, sandbox: nil)
                return
            }
            handler.consume(context: context)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        guard !answered else { return }
        buffer.writeBuffer(&chunk)
        if buffer.readableBytes > ControlServer.maxLineBytes {
            finish(context: context, .failure("daemon request longer than \(ControlServer.maxLineBytes) bytes"), op: nil, sandbox: nil)
            return
        }
        consume(context: context)
    }

    private func consume(context: ChannelHandlerContext) {
        guard let peer, DaemonPeer.allows(uid: peer.uid), !answered,
              let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return }
        let line = buffer.getBytes(at: buffer.readerIndex, length: newline - buffer.readerIndex) ?? []
        answered = true
        let request: DaemonRequest
        do {
            request = try DaemonRequest(jsonLine: line)
        } catch {
            finish(context: context, .failure(String(describing: error)), op: nil, sandbox: nil)
            return
        }
        let (op, sandbox) = Self.describe(request)
        let daemon = self.daemon
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        // Serving and stopping block (the opener, draining): off the event loop.
        DispatchQueue.global().async {
            let response = daemon.respond(to: request)
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.finish(context: context, response, op: op, sandbox: sandbox)
            }
        }
    }

    private static func describe(_ request: DaemonRequest) -> (String, String?) {
        switch request {
        case let .serve(sandbox, _): ("serve", sandbox)
        case let .stop(sandbox): ("stop", sandbox)
        case let .reload(sandbox): ("reload", sandbox)
        case .list: ("list", nil)
        }
    }

    /// Audits the request with the caller, answers, and closes.
    private func finish(context: ChannelHandlerContext, _ response: DaemonResponse, op: String?, sandbox: String?) {
        answered = true
        var reason: String?
        if case let .failure(text) = response { reason = text }
        // A name that is not a sandbox name is not repeated into the log.
        let named = sandbox.flatMap { try? NamespaceName($0) }?.rawValue
        audit.record(AuditEvent(.daemonRequest, sandbox: named ?? "-", via: .control, reason: reason, ok: reason == nil,
                                op: op, uid: peer?.uid, pid: peer?.pid))
        let text = (try? response.jsonLine()) ?? "{\"ok\":false,\"error\":\"cannot encode the answer\"}"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text + "\n"))).whenComplete { _ in context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
