#if canImport(Glibc)
import Glibc
#endif
import Gateway
import NIOCore
import Netns
import SystemCalls
import GatewayCore

/// Carries out a `RunPlan`: sandbox, gateway, command, teardown.
///
/// The order is the promise: every listener serves before CMD starts, so CMD's first DNS
/// lookup or clone cannot race the gateway; the gateway drains after CMD exits.
///
/// As root, this process builds S and G (unnamed) and spawns CMD itself. Rootless, a child
/// in a new user namespace builds them (`SandboxChild`), hands the listening sockets over
/// and spawns CMD when told the gateway is ready. Either way this process is the gateway,
/// serving from the host namespace, and CMD's sandbox init dies with the thread that
/// spawned it — the main thread — so a SIGKILL of airlock leaves nothing behind.
struct OneShotRun {
    let plan: RunPlan

    /// Seconds the gateway may take to start serving before airlock gives up.
    static let readyTimeout = 15.0

    /// Runs the plan; returns the exit code for airlock (CMD's status, shell-style).
    func execute() throws -> Int32 {
        // Every flag is checked (policy, audit log, upstreams) before anything is built.
        guard let gatewayAddress = IPAddress(plan.topology.gatewayAddress.address.description) else {
            throw CLIError("gateway address \(plan.topology.gatewayAddress) is not usable")
        }
        // Without --audit-log the audit lines wait until CMD has ended: CMD shares stderr.
        let heldAudit = plan.gatewayOptions.auditLogPath == nil ? HeldAuditSink() : nil
        // Every refusal is counted for the report printed when CMD has ended.
        let tally = RefusalTally()
        // The policy is read once: CMD may be able to change the file (always, rootless).
        let runtime = try GatewayRuntime(
            sandbox: plan.sandboxName, gatewayAddress: gatewayAddress, options: plan.gatewayOptions,
            policyFiles: plan.policyFiles, extraGitHosts: plan.gitHosts,
            sessionLimits: SessionLimits(maxLiveSessions: 4, idleTimeout: SessionLimits().maxTTL),
            reloadPolicy: false, audit: heldAudit.map { AuditLog(sink: $0, sandbox: plan.sandboxName, tally: tally) },
            tally: tally, repositoriesGiven: !plan.scope.entries.isEmpty, logLevel: .warning, secrets: plan.routeSecrets)
        if let missing = RouteOptions.missingSecretError(
            Policy.missingSecrets(of: runtime.routes, known: Set(plan.routeSecrets.keys)), environment: ProcessInfoEnvironment.current)
        {
            throw missing
        }

        if plan.upstreamToken == nil, let route = runtime.routes.first(where: { $0.sessionHost != nil }) {
            throw RunPlan.Invalid("route \(route.name) uses the git session's repositories and token: pass --repo OWNER/REPO[:rw] with --token-env VAR or --token-file FILE")
        }
        var extraEnvironment: [String: String] = [:]
        var sessionToken: Secret?
        if let upstreamToken = plan.upstreamToken {
            let session = try runtime.sessions.create(
                sandbox: plan.sandboxName, scope: plan.scope, upstreamToken: upstreamToken,
                ttl: SessionLimits().maxTTL, pushPolicy: plan.pushPolicy)
            sessionToken = session.token
            extraEnvironment = GitSandboxConfig.environment(
                hosts: runtime.gitUpstreams.hosts, repositories: plan.scope.entries.map(\.repository), token: session.token)
        } else {
            // No --repo: git on the git hosts the policy does not allow goes to the gateway
            // anyway, which answers with the --repo to pass (instead of a DNS error). Hosts the
            // policy allows stay direct, through the proxy.
            let hosts = runtime.gitUpstreams.hosts.filter { !runtime.allowsHTTPS(to: $0) }
            if !hosts.isEmpty {
                extraEnvironment = GitSandboxConfig.environment(hosts: hosts, token: nil)
            }
        }
        // Preset routes point the provider's tools at the gateway; their key variable
        // holds a placeholder, never the key.
        // The GitHub API preset's token variables get the session token, useless elsewhere.
        extraEnvironment.merge(RoutePreset.environment(for: runtime.routes, sessionToken: sessionToken)) { _, route in route }
        if !plan.droppedNames.isEmpty {
            printNotice("airlock: not passed to the sandbox (credential-looking): \(plan.droppedNames.joined(separator: ", "))")
        }
        plan.view.notices.forEach(printNotice)
        plan.gatewayOptions.learnStartNotice.map(printNotice)
        let spec = SandboxChildSpec(plan: plan, extraEnvironment: extraEnvironment, listenerPorts: runtime.listenerPorts)

        let status: Int32
        var refusals: RefusalTally.Summary?
        switch plan.mode {
        case .root:
            status = try runAsRoot(spec: spec, runtime: runtime, heldAudit: heldAudit, tally: tally, refusals: &refusals)
        case .rootless:
            status = try runRootless(spec: spec, runtime: runtime)
            runtime.shutdown()
            _ = try? runtime.wait(timeout: 5)
            heldAudit?.release(to: 2)
            refusals = tally.summary
        }
        plan.gatewayOptions.learnEndNotice.map(printNotice)
        let report = RunReport(refusals ?? RefusalTally.Summary())
        report.lines.forEach(printNotice)
        if refusals == nil {
            printNotice("airlock: the gateway ended without its count of refusals; the audit log has every one")
        }
        if !report.isEmpty, let path = plan.stepSummary {
            report.appendMarkdown(to: path)
        }
        if plan.json {
            var line = JSONLineWriter()
            line.field("event", "run_exit")
            line.field("sandbox", plan.sandboxName)
            line.field("status", Int(status))
            line.field("refused", objects: report.jsonObjects)
            printNotice(line.finish())
        }
        return status
    }

    /// As root: this process builds the sandbox and starts CMD; the gateway serves from a
    /// child process that has dropped to `nobody` (see `GatewayProcess`).
    /// `refusals` is the gateway process's count of refusals, once it has ended.
    private func runAsRoot(
        spec: SandboxChildSpec, runtime: GatewayRuntime, heldAudit: HeldAuditSink?, tally: RefusalTally,
        refusals: inout RefusalTally.Summary?
    ) throws -> Int32 {
        try Privileges.requireRoot(
            for: "airlock run as root", capabilities: [.sysAdmin, .netAdmin, .netBindService, .setuid, .setgid, .setpcap])
        ProcessControl.forbidDumping()
        let gatewayUser = (try? Users.lookup("nobody")) ?? SandboxUser(uid: 65534, gid: 65534, groups: [], home: "/", name: "nobody")
        // The gateway starts its threads while the sandbox is built, and the sandbox's
        // mounts are set up while the gateway starts serving; CMD starts once it serves.
        let gateway = try GatewayProcess.start(
            runtime: runtime, user: gatewayUser, heldAudit: heldAudit, tally: tally, readyTimeout: Self.readyTimeout)
        // The sandbox init is reaped after the gateway stopped: its teardown of the sandbox
        // overlaps the gateway's drain (`SandboxProcess.commandStatus`).
        var started: SandboxProcess?
        defer {
            refusals = gateway.stop()
            _ = started?.wait()
        }
        // The listeners are bound in G as soon as it exists, and the gateway starts serving
        // on them while S, the veth pair and the addresses are made.
        let sandbox = try EphemeralSandbox.build(plan.topology, listeners: .init(ports: runtime.listenerPorts) { sockets in
            try gateway.serve(listeners: sockets.all.map(\.descriptor.rawValue))
        })
        let pending = try SandboxProcess.prepare(spec.processSpec(networkNamespace: sandbox.sandbox.descriptor.rawValue))
        try gateway.awaitReady()
        let process = try pending.start()
        try SignalForwarding.start(to: process.pid)
        defer { SignalForwarding.stop() }
        started = process
        return process.commandStatus().shellCode
    }

    private func runRootless(spec: SandboxChildSpec, runtime: GatewayRuntime) throws -> Int32 {
        let (channel, childEnd) = try DescriptorChannel.pair()
        let gateway = getpid()
        // The builder is forked, not re-executed (no second process start, no plan to
        // send): it has the plan in memory. Forked while this process has one thread, with
        // nothing buffered for it to write twice.
        try ForkSafety.waitUntilSingleThreaded(toStart: "the sandbox builder")
        fflush(nil)
        let pid: pid_t
        do {
            guard let child = try RootlessLauncher.fork(keeping: childEnd) else {
                // Closed by the fork already, with every descriptor but the builder's end.
                SandboxChild.run(spec: spec, channel: DescriptorChannel(adopting: childEnd), gateway: gateway)
            }
            pid = child
        } catch let error as RootlessLauncher.LaunchError {
            close(childEnd)
            throw CLIError("\(error)\(Self.userNamespaceFix())")
        }
        close(childEnd)
        // Only now: the child must stay dumpable until it has written its own uid_map.
        ProcessControl.forbidDumping()
        // The gateway's threads start while the child builds the sandbox.
        let serving = try SharedServing.start(eventLoops: 1)
        // The child answers with the gateway's listening sockets, or ends having said why.
        guard let (message, descriptors) = try channel.receive(), message == SandboxChild.listening,
              descriptors.count == GatewayListeners.standardCount + runtime.listenerPorts.count
        else {
            return Self.waitForExit(pid).shellCode
        }
        try serve(runtime, sockets: descriptors, shared: serving)
        // A builder that failed after it sent the listeners (the rest of the topology, the
        // init's set-up) has said why and ended: its status is the run's.
        do {
            try channel.send(SandboxChild.ready)
        } catch {
            return Self.waitForExit(pid).shellCode
        }
        try SignalForwarding.start(to: pid)
        defer { SignalForwarding.stop() }
        return Self.waitForExit(pid).shellCode
    }

    /// Starts the gateway on `sockets` (DNS UDP, DNS TCP, HTTP, TLS, proxy, SSH) and waits until
    /// every listener serves. `shared`'s threads end with the process.
    private func serve(_ runtime: GatewayRuntime, sockets: [CInt], shared: SharedServing) throws {
        GatewayRuntime.raiseOpenFileLimit()
        runtime.start(listeners: GatewayListeners(ordered: sockets, ports: runtime.listenerPorts), shutdownSignals: [], shared: shared)
        try runtime.awaitReady(timeout: Self.readyTimeout)
    }

    static func waitForExit(_ pid: pid_t) -> ExitStatus {
        var status: Int32 = 0
        if retryingInterrupted({ waitpid(pid, &status, 0) }) < 0 { return .exited(1) }
        return ExitStatus(waitStatus: status)
    }

    /// How to turn unprivileged user namespaces on, for the error message.
    static func userNamespaceFix() -> String {
        if SystemControl.read("kernel/apparmor_restrict_unprivileged_userns") == "1" {
            return "; AppArmor restricts them (Ubuntu 24.04): run as root, or allow them with `sysctl kernel.apparmor_restrict_unprivileged_userns=0`"
        }
        if SystemControl.read("user/max_user_namespaces") == "0" {
            return "; turn them on with `sysctl user.max_user_namespaces=15000`, or run as root"
        }
        if SystemControl.read("kernel/unprivileged_userns_clone") == "0" {
            return "; turn them on with `sysctl kernel.unprivileged_userns_clone=1`, or run as root"
        }
        return ""
    }
}
