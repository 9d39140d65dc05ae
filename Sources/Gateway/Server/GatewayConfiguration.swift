import Logging
import NIOCore
import GatewayCore

/// Everything one sandbox's gateway needs, apart from its listening sockets.
package struct GatewayConfiguration: Sendable {
    /// The sandbox name, in audit lines and router contexts.
    package var sandbox: String
    /// The gateway's address inside the sandbox (`169.254.200.1`): DNS answers with it,
    /// `Host: 169.254.200.1` means the gateway itself, and it is never dialled.
    package var gatewayAddress: IPAddress
    /// The policy, reloaded in place.
    package var policy: PolicyStore
    /// Where decisions go.
    package var audit: AuditLog
    /// Timeouts and sizes.
    package var limits: GatewayLimits
    /// Serves `/git/…` on `airlock.internal`; `nil` answers those paths with `404`.
    package var internalRouter: (any HTTPRouter)?
    /// Opens upstream connections; `nil` uses a `PolicyDialer`.
    package var dialer: (any UpstreamDialer)?
    /// Names DNS answers with the gateway address whatever the policy: the git hosts, so
    /// that their SSH spellings reach port 22 and hear that SSH is not offered.
    package var gatewayNames: [String]
    /// Operational messages (not decisions: those go to `audit`).
    package var logger: Logger
    /// Binds a listening TCP socket on the gateway address inside G for a port a reload
    /// added (`gateway serve`: its `PortBinder`); the caller owns the descriptor. `nil`
    /// when the policy is never reloaded (`run`) or listeners cannot be added: a reload
    /// that adds a port then audits `port_listen` with `ok: false`.
    package var bindPort: (@Sendable (Int) throws -> CInt)?

    /// Creates a configuration.
    package init(
        sandbox: String, gatewayAddress: IPAddress, policy: PolicyStore, audit: AuditLog,
        limits: GatewayLimits = GatewayLimits(), internalRouter: (any HTTPRouter)? = nil,
        dialer: (any UpstreamDialer)? = nil, gatewayNames: [String] = [], logger: Logger = Logger(label: "airlock.gateway"),
        bindPort: (@Sendable (Int) throws -> CInt)? = nil
    ) {
        self.bindPort = bindPort
        self.gatewayNames = gatewayNames
        self.sandbox = sandbox
        self.gatewayAddress = gatewayAddress
        self.policy = policy
        self.audit = audit
        self.limits = limits
        self.internalRouter = internalRouter
        self.dialer = dialer
        self.logger = logger
    }
}
