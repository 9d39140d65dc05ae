import NIOCore
import NIOPosix
import GatewayCore

/// Serves DNS over UDP from a socket bound inside the gateway namespace.
package enum DNSUDPListener {
    /// Starts serving `fd` (a bound UDP socket, owned from here on) on `group`; `gatewayNames`
    /// are answered with the gateway address whatever the policy.
    /// - Returns: the channels serving it once they are registered; closing them stops the
    ///   listener.
    package static func start(
        _ fd: CInt, group: any EventLoopGroup, policy: PolicyStore, gatewayAddress: IPAddress, audit: AuditLog,
        gatewayNames: [String] = []
    ) -> EventLoopFuture<[any Channel]> {
        DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        DNSUDPHandler(policy: policy, gatewayAddress: gatewayAddress, audit: audit, gatewayNames: gatewayNames))
                }
            }
            .withBoundSocket(fd)
            .map { [$0] }
    }
}
